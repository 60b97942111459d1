import { renderActivationScript } from '@pideploy/activate';

/** The bundle's bin/activate: the activation stage's script bound to the bundle (see @pideploy/activate). */
export const BUNDLE_ACTIVATE_SCRIPT = renderActivationScript({ shebang: '#!@shell@', defaultToplevel: '@toplevel@', defaultBundle: '@bundle@' });

/**
 * Where pideploy works on a NixOS host: the places the bundle's own `bin/activate`
 * (@pideploy/bundle) and the activation script (@pideploy/activate) both write, in one home.
 */

/** The system profile nixos-rebuild sets (switch, boot). */
export const SYSTEM_PROFILE = '/nix/var/nix/profiles/system';

/** The GC root that keeps the deployed bundle (or toplevel) alive on the target. */
export const CURRENT_CONFIGURATION_ROOT = '/etc/nixos/current-configuration';

/**
 * Where each host notes which bundle deployed each system (a file named after the system's store
 * path, holding the bundle's): a rollback points {@link CURRENT_CONFIGURATION_ROOT} back at the
 * bundle of the system it goes back to, while the host still has it. Not GC roots: a note whose
 * bundle was collected is dropped. On the Nix state's disk, so that it outlives a reboot.
 */
export const BUNDLE_NOTES_DIR = '/nix/var/pideploy/bundles';

import { BUNDLE_NOTES_DIR, CURRENT_CONFIGURATION_ROOT, SYSTEM_PROFILE } from '@pideploy/core';

// (Re-exported as this package's own: where the script works on the host, shared with @pideploy/activate.)
export { BUNDLE_NOTES_DIR, CURRENT_CONFIGURATION_ROOT, SYSTEM_PROFILE };

/**
 * The text of `$bundle/bin/activate`, with `@shell@`, `@toplevel@` and `@bundle@` left for the
 * bundle expression to fill in. POSIX sh, run as root on the target:
 * `sudo $bundle/bin/activate <switch|boot|test|dry-activate>`. For switch/boot it sets the system
 * profile (`nix-env -p /nix/var/nix/profiles/system --set $toplevel`), then runs
 * `$toplevel/bin/switch-to-configuration <action>`, and only after that succeeded (and not for
 * dry-activate) points the GC root /etc/nixos/current-configuration at this bundle. It never
 * evaluates or builds anything. The interpreter is the pinned nixpkgs' `runtimeShell` for the
 * target system (bash on real nixpkgs, the bootstrap busybox sh in the lab's mini-nixpkgs),
 * which is in the bundle's closure, so it runs wherever the closure was copied.
 */
export const ACTIVATE_SCRIPT_TEMPLATE = `#!@shell@
# pideploy bundle activation (generated): sudo @bundle@/bin/activate <switch|boot|test|dry-activate>
# Sets the system profile (switch, boot), runs switch-to-configuration, then roots this bundle
# at ${CURRENT_CONFIGURATION_ROOT}. Never evaluates or builds: everything is in the closure.
set -u
bundle=@bundle@
toplevel=@toplevel@
profile=${SYSTEM_PROFILE}
action="\${1:-}"
PATH="/run/wrappers/bin:/run/current-system/sw/bin:/nix/var/nix/profiles/default/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin\${PATH:+:$PATH}"
export PATH
case "$action" in
  switch|boot|test|dry-activate) ;;
  *) echo "usage: sudo $bundle/bin/activate switch|boot|test|dry-activate" >&2; exit 2 ;;
esac
if [ "$(id -u)" != 0 ]; then
  echo "activate: must run as root: sudo $bundle/bin/activate $action" >&2
  exit 1
fi
if [ ! -x "$toplevel/bin/switch-to-configuration" ]; then
  echo "activate: $toplevel/bin/switch-to-configuration is missing: copy the bundle's whole closure first" >&2
  exit 1
fi
if [ "$action" = switch ] || [ "$action" = boot ]; then
  nix-env -p "$profile" --set "$toplevel" || { echo "activate: could not set $profile to $toplevel" >&2; exit 1; }
fi
"$toplevel/bin/switch-to-configuration" "$action"
status=$?
if [ "$status" != 0 ]; then
  echo "activate: switch-to-configuration $action failed (exit $status); ${CURRENT_CONFIGURATION_ROOT} unchanged" >&2
  exit "$status"
fi
if [ "$action" != dry-activate ]; then
  mkdir -p /etc/nixos
  nix-store --add-root ${CURRENT_CONFIGURATION_ROOT} --indirect -r "$bundle" >/dev/null || {
    echo "activate: could not root $bundle at ${CURRENT_CONFIGURATION_ROOT}" >&2
    exit 1
  }
  # Which bundle deployed this system, for a rollback to it later (@pideploy/activate's BUNDLE_NOTES_DIR).
  { mkdir -p ${BUNDLE_NOTES_DIR} && printf '%s\\n' "$bundle" >"${BUNDLE_NOTES_DIR}/\${toplevel##*/}"; } 2>/dev/null || true
fi
echo "activate: $action done: $toplevel"
`;

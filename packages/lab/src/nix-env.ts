/**
 * Settings for the local (deployer-side) nix in the lab and its tests: no public binary cache
 * (all traffic stays on the lab's own addresses), no sandbox and no build users (Debian's
 * nix-bin without nix-setup-systemd has no nixbld group), aarch64 builds through qemu binfmt.
 */
export const LAB_LOCAL_NIX_CONFIG = [
  'sandbox = false',
  'experimental-features = nix-command',
  'substituters =',
  'build-users-group =',
  'extra-platforms = aarch64-linux',
  'fallback = false',
].join('\n');

/** Environment variables for running the local nix against the lab (merge over process.env). */
export function labLocalNixEnv(xdgCacheDir: string): Record<string, string> {
  return { NIX_CONFIG: `${LAB_LOCAL_NIX_CONFIG}\n`, XDG_CACHE_HOME: xdgCacheDir, NIX_PATH: '' };
}

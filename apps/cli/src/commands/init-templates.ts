/** Files `pideploy init` writes. Pure text; the Nix evaluates against real nixpkgs and mini-nixpkgs alike. */

/** A Raspberry Pi configuration.nix: what every Pi needs, with the hardware-specific lines commented. */
export function renderConfigurationNix(hostName: string): string {
  return `# The NixOS configuration of ${hostName}. pideploy builds it on your machine from the pinned
# nixpkgs (pins.nix) and ships it to the Pi inside the bundle, so the Pi never evaluates it.
{ config, pkgs, lib, ... }:
{
  imports = [ ./hardware-configuration.nix ];

  networking.hostName = "${hostName}";
  time.timeZone = "UTC";

  environment.systemPackages = [ pkgs.hello ];
  environment.etc."motd".text = "Deployed with pideploy.\\n";

  services.openssh.enable = true;
  # users.users.deploy = {
  #   isNormalUser = true;
  #   extraGroups = [ "wheel" ];
  #   openssh.authorizedKeys.keys = [ "ssh-ed25519 AAAA… you@laptop" ];
  # };

  system.stateVersion = "24.05";
}
`;
}

/** The hardware part: the Pi boots with extlinux, not GRUB; board-specific lines are commented. */
export function renderHardwareConfigurationNix(): string {
  return `# Raspberry Pi hardware. Uncomment what your board needs (and import nixos-hardware for a Pi 4/5).
{ config, pkgs, lib, ... }:
{
  boot.loader.grub.enable = false;
  boot.loader.generic-extlinux-compatible.enable = true;

  # boot.kernelPackages = pkgs.linuxPackages_rpi4;
  # hardware.raspberry-pi."4".apply-overlays-dtmerge.enable = true;
  # fileSystems."/" = { device = "/dev/disk/by-label/NIXOS_SD"; fsType = "ext4"; options = [ "noatime" ]; };
  # swapDevices = [ { device = "/swapfile"; size = 1024; } ];
}
`;
}

/** One host of pideploy.json. */
export interface InitHost {
  readonly name: string;
  readonly target: string;
  readonly sudo: 'password' | 'nopasswd' | 'root';
}

/** pideploy.json for the given hosts, all using ./configuration.nix (stable key order). */
export function renderPideployJson(options: {
  readonly hosts: readonly InitHost[];
  readonly system: string;
  readonly sshConfig?: string | undefined;
}): string {
  const hosts = Object.fromEntries(
    options.hosts.map((host) => [
      host.name,
      {
        target: host.target,
        configuration: './configuration.nix',
        sudo: host.sudo,
        tags: ['pi'],
        ...(options.sshConfig === undefined ? {} : { sshConfig: options.sshConfig }),
      },
    ]),
  );
  return `${JSON.stringify(
    {
      $schema: './node_modules/@pideploy/sdk/pideploy.schema.json',
      pins: 'pins.json',
      defaults: { system: options.system, buildMode: 'emulated' },
      hosts,
    },
    null,
    2,
  )}\n`;
}

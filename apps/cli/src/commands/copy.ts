import path from 'node:path';
import { PideployError } from '@pideploy/core';
import { loadConfigIfPresent } from '@pideploy/sdk';
import { connectSsh, sharePasswordPerRealm } from '@pideploy/ssh';
import { copyClosure, describeCopyPlan, formatBytes, openServeConnection, storeAccessFor, type CopyClosureResult, type ServeConnection, type StoreAccess } from '@pideploy/transport';
import type { CommandInvocation, CommandResult } from '../command.js';
import { requireBuiltBundle } from '../built-bundle.js';
import { stringFlag, stringFlags } from '../flags.js';
import { askOnTerminal, givenSudoPassword } from '../sudo-password.js';


/**
 * `pideploy copy <host…> [--path P] [--ssh-config FILE] [--sudo-password-file F | --sudo-password-stdin]`:
 * copies the closure of P (default: the host's bundle from `pideploy build`) to each host over one
 * SSH connection per host: as root through sudo for a host of pideploy.json (the password asked on
 * the terminal unless given) or when a password is given, else as the login user.
 */
export async function copyCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const hosts = invocation.positionals;
  const givenPaths = stringFlags(invocation, 'path');
  if (hosts.length === 0) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: 'copy needs at least one host', hint: 'pideploy copy pi1 (after pideploy build pi1), or pideploy copy deploy@pi.local --path ./result' });
  }
  // Hosts of pideploy.json: their target, ssh_config and, without --path, the bundle `pideploy build` made.
  const config =
    await loadConfigIfPresent({ cwd: invocation.io.cwd, configFile: invocation.global.config });
  const sshConfigFlag = stringFlag(invocation, 'ssh-config');
  // Every host's paths are known before the password is asked and the first host connected.
  const pathsOf = new Map(hosts.map((host) => [host, givenPaths.length > 0 ? givenPaths : [requireBuiltBundle(config, host, { command: 'copy', flag: '--path' }).bundle]] as const));
  const password = await givenSudoPassword(invocation);
  // Asked on the terminal once per login user, as deploy asks (again after a refused one).
  const askOncePer = sharePasswordPerRealm(askOnTerminal);
  const results: CopyClosureResult[] = [];
  for (const host of hosts) {
    const configured = config?.hosts.find((item) => item.name === host);
    const paths = pathsOf.get(host) ?? givenPaths;
    const sshConfigFile = sshConfigFlag !== undefined ? path.resolve(invocation.io.cwd, sshConfigFlag) : configured?.sshConfig;
    await using session = await connectSsh(
      configured?.target ?? host,
      {
        sshConfigFile,
        acceptNewHostKey: invocation.flags['accept-new-host-key'] === true,
        compress: invocation.flags['compress'] === true,
        signal: invocation.context.signal,
      },
      invocation.context,
    );
    let access: StoreAccess = { mode: 'direct' };
    let connection: ServeConnection | undefined;
    // A host of pideploy.json imports as root, as `deploy` does (the password asked on the
    // terminal when not given); another target as its login user, unless a password is given.
    if (password !== undefined || configured !== undefined) {
      // Finds root login / NOPASSWD / password; the copy's root serve process, started now, proves
      // the password before anything is sent (no separate `sudo -v`: one password check per host).
      const sudo = await session.sudo({
        ...(password === undefined ? { passwordProvider: askOncePer(session.host.user) } : { password }),
        signal: invocation.context.signal,
        proveWith: async (runner) => {
          connection = await openServeConnection({ host, session, access: storeAccessFor(runner) }, invocation.context);
        },
      });
      access = storeAccessFor(sudo);
    }
    const result = await copyClosure(
      {
        host,
        session,
        paths: paths.map((item) => (item.startsWith('/') ? item : path.resolve(invocation.io.cwd, item))),
        access,
        connection,
        substituteOnDestination: invocation.flags['substitute-on-destination'] === true || configured?.substituteOnDestination === true,
      },
      invocation.context,
    );
    results.push(result);
  }
  const text = results
    .map(
      (result) =>
        `${result.host}: ${describeCopyPlan({ toSend: result.pathsSent, present: result.pathsPresent, bytesToSend: result.bytesSent })}; ` +
        `sent ${formatBytes(result.bytesSent)} in ${(result.durationMs / 1000).toFixed(1)} s`,
    )
    .join('\n');
  return { value: { version: 1, copies: results }, text };
}

import { spawnSync } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LAB_SUDO_PASSWORD, labDown, labExec, labUp, type LabHostStatus, type LabStatus } from '@pideploy/lab';
import { describeLab, isProcessRunning, sshLoginCount, sudoCommandsOf, sudoLogFrom, sudoPasswordChecksFrom } from '@pideploy/lab/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { deployResultsOf, runBuiltPideploy, runBuiltPideployOnTerminal } from '../testing/built-cli.js';

const pideploy = (args: readonly string[], cwd: string, env: NodeJS.ProcessEnv) => runBuiltPideploy(args, { cwd, env });

describeLab('pideploy deploy end to end (lab: trusted, untrusted and NOPASSWD hosts)', () => {
  let status: LabStatus;
  let project: string;
  let env: NodeJS.ProcessEnv;
  let passwordFile: string;
  beforeAll(async () => {
    status = await labUp({ hosts: 3, hostSettings: { pi2: { trusted: false }, pi3: { sudo: 'nopasswd' } } });
    env = { ...process.env, ...status.env };
    const workDir = await mkdtemp(path.join(os.tmpdir(), 'pideploy-deploy-'));
    project = path.join(workDir, 'fleet');
    const init = await pideploy(['init', project, '--lab'], workDir, process.env);
    expect(init.code).toBe(0);
    passwordFile = path.join(workDir, 'sudo-password');
    await writeFile(passwordFile, `${LAB_SUDO_PASSWORD}\n`, { mode: 0o600 });
  });
  afterAll(async () => {
    await labDown();
  });

  it('deploys three hosts in parallel with one password, then a redeploy is a no-op', async () => {
    const loginsBefore = status.hosts.map((host) => sshLoginCount(host));
    const pi1 = status.hosts[0] as LabHostStatus;
    const sudoRan = sudoLogFrom(pi1);
    const passwordChecks = sudoPasswordChecksFrom(pi1);
    const first = await pideploy(['deploy', '--parallel', '3', '--sudo-password-file', passwordFile, '--json'], project, env);
    const lines = first.stdout.trim().split('\n').map((line) => JSON.parse(line) as { event?: { type: string }; result?: { ok: boolean; results: { host: string; ok: boolean; toplevel: string; bundle: string; activation: { outcome: string; deployId: string } }[] } });
    const result = lines.at(-1)?.result;
    expect(first.stderr).not.toContain('pideploy:');
    expect(first.code).toBe(0);
    expect(result?.results.map((host) => [host.host, host.ok, host.activation.outcome])).toEqual([
      ['pi1', true, 'confirmed'],
      ['pi2', true, 'confirmed'],
      ['pi3', true, 'confirmed'],
    ]);
    expect(lines.some((line) => line.event?.type === 'copy-plan')).toBe(true);
    for (const host of result?.results ?? []) {
      expect((await labExec(host.host, ['readlink', '/run/current-system'])).stdout.trim()).toBe(host.toplevel);
      expect((await labExec(host.host, ['readlink', '-f', '/etc/nixos/current-configuration'])).stdout.trim()).toBe(host.bundle);
    }
    // One login for build+copy+activate, one more for the magic-rollback confirmation.
    expect(status.hosts.map((host, index) => sshLoginCount(host) - (loginsBefore[index] ?? 0))).toEqual([2, 2, 2]);
    // What ran as root on the password host, in sudo's own log: three commands, each proving the
    // password (the copy's serve process proves it at connect time: no separate sudo -v).
    expect(sudoCommandsOf(sudoRan()).map((command) => command.replace(/\/nix\/store\/\S+\/bin\/activate/u, 'activate').replace(/ --.*$/u, ''))).toEqual([
      '/usr/bin/nix-store',
      '/bin/sh activate switch',
      `/bin/sh activate confirm ${result?.results.find((host) => host.host === 'pi1')?.activation.deployId ?? '?'}`,
    ]);
    // The host checked the password exactly once per root command: no sudo -v anywhere.
    expect(passwordChecks().map((line) => line.replace(/\/nix\/store\/\S+\/bin\/activate/u, 'activate').replace(/ --[a-z].*$/u, ''))).toEqual([
      'deploy sudo -k -S -p  -- nix-store',
      'deploy sudo -k -S -p  -- /bin/sh activate switch',
      `deploy sudo -k -S -p  -- /bin/sh activate confirm ${result?.results.find((host) => host.host === 'pi1')?.activation.deployId ?? '?'}`,
    ]);

    const again = await pideploy(['deploy', 'pi1', '--sudo-password-file', passwordFile, '--json'], project, env);
    const noop = (JSON.parse(again.stdout.trim().split('\n').at(-1) ?? '{}') as { result: { results: { activation: { outcome: string }; copy: { pathsSent: string[]; bytesSent: number } }[] } }).result.results[0];
    expect(noop?.activation.outcome).toBe('skipped');
    expect(noop?.copy.pathsSent).toEqual([]);
    expect(noop?.copy.bytesSent).toBe(0);
  });

  it('deploys a comment-only change (the same system in a new bundle): sends only the bundle, activates it, moves the GC root to it', async () => {
    const config = JSON.parse(readFileSync(path.join(project, 'pideploy.json'), 'utf8')) as { hosts: Record<string, { configuration: string }> };
    await appendFile(path.resolve(project, config.hosts['pi1']?.configuration ?? 'configuration.nix'), '# a comment: the same system, a new bundle\n');
    const runningBefore = (await labExec('pi1', ['readlink', '/run/current-system'])).stdout.trim();
    const bundleBefore = (await labExec('pi1', ['readlink', '-f', '/etc/nixos/current-configuration'])).stdout.trim();
    const run = await pideploy(['deploy', 'pi1', '--sudo-password-file', passwordFile, '--json'], project, env);
    expect(run.code).toBe(0);
    const host = (JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}') as { result: { results: { toplevel: string; bundle: string; activation: { outcome: string }; copy: { pathsSent: string[] } }[] } }).result.results[0];
    expect(host?.toplevel).toBe(runningBefore);
    expect(host?.bundle).not.toBe(bundleBefore);
    expect(host?.copy.pathsSent).toEqual([host?.bundle]);
    expect(host?.activation.outcome).toBe('confirmed');
    expect((await labExec('pi1', ['readlink', '-f', '/etc/nixos/current-configuration'])).stdout.trim()).toBe(host?.bundle);
  });

  it('keeps going when one host fails and reports it in the summary (exit 1)', async () => {
    const configFile = path.join(project, 'pideploy.json');
    const config = JSON.parse(readFileSync(configFile, 'utf8')) as { hosts: Record<string, unknown> };
    await writeFile(path.join(project, 'broken.nix'), '{ ... }: { networking.hostNmae = "typo"; }\n');
    config.hosts['broken'] = { ...(config.hosts['pi2'] as object), configuration: './broken.nix', tags: ['bad'] };
    await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);
    const run = await pideploy(['deploy', 'pi1', 'broken', '--sudo-password-file', passwordFile], project, env);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^pi1 +skipped/mu);
    expect(run.stdout).toMatch(/^broken +FAILED/mu);
    expect(run.stdout).toContain('hostNmae');
  });

  it('stops an activation that outlives the activation timeout (pideploy.json deploy.activationTimeout, or --activation-timeout) and the host rolls back', async () => {
    const configFile = path.join(project, 'pideploy.json');
    const original = readFileSync(configFile, 'utf8');
    const config = JSON.parse(original) as { hosts: Record<string, unknown>; deploy?: Record<string, unknown> };
    // Its switch-to-configuration takes 60 s. (A copy of configuration.nix: a bundle has one file of that name, its entry.)
    await writeFile(path.join(project, 'slow-common.nix'), readFileSync(path.join(project, 'configuration.nix')));
    await writeFile(path.join(project, 'slow.nix'), '{ ... }: { imports = [ ./slow-common.nix ]; lab.activationSeconds = 60; }\n');
    config.hosts['slow'] = { ...(config.hosts['pi3'] as object), configuration: './slow.nix', tags: ['slow'] };
    config.deploy = { ...config.deploy, activationTimeout: 3 };
    await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);
    try {
      const runningBefore = (await labExec('pi3', ['readlink', '/run/current-system'])).stdout.trim();
      const fromConfig = await pideploy(['deploy', 'slow', '--sudo-password-file', passwordFile], project, env);
      expect(fromConfig.code).toBe(1);
      expect(fromConfig.stdout, fromConfig.stderr).toMatch(/^slow +FAILED/mu);
      expect(`${fromConfig.stdout}${fromConfig.stderr}`).toContain('did not finish within 3 s (--activation-timeout): stopped');
      expect((await labExec('pi3', ['readlink', '/run/current-system'])).stdout.trim()).toBe(runningBefore);
      const started = performance.now();
      const fromFlag = await pideploy(['deploy', 'slow', '--activation-timeout', '1', '--sudo-password-file', passwordFile, '--json'], project, env);
      expect(fromFlag.code).toBe(1);
      const [slow] = deployResultsOf<{ host: string; ok: boolean; error?: { code: string; message: string } }>(fromFlag.stdout);
      expect(slow?.error?.code).toBe('PIDEPLOY_ACTIVATION_FAILED');
      expect(slow?.error?.message).toContain('did not finish within 1 s (--activation-timeout): stopped');
      expect((performance.now() - started) / 1000).toBeLessThan(30);
      expect((await labExec('pi3', ['readlink', '/run/current-system'])).stdout.trim()).toBe(runningBefore);
      const nonsense = await pideploy(['deploy', 'slow', '--activation-timeout', 'soon'], project, env);
      expect([nonsense.code, nonsense.stderr]).toEqual([2, 'pideploy: --activation-timeout takes a whole number of seconds of at least 0, not "soon"\nhint: for example --activation-timeout 5\n']);
    } finally {
      await writeFile(configFile, original);
    }
  });

  it('says a wrong password from --sudo-password-file was rejected (not that none was given), and changes nothing', async () => {
    const wrongFile = path.join(path.dirname(passwordFile), 'wrong-password');
    await writeFile(wrongFile, 'not-the-password\n', { mode: 0o600 });
    const before = (await labExec('pi1', ['readlink', '/run/current-system'])).stdout;
    const run = await pideploy(['deploy', 'pi1', '--sudo-password-file', wrongFile], project, env);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^pi1 +FAILED/mu);
    expect(run.stdout).toMatch(/^pi1: sudo on .* rejected the password for deploy$/mu);
    expect(run.stdout).toMatch(/hint: check the password file \/ stdin/u);
    expect(`${run.stdout}${run.stderr}`).not.toContain('none was given');
    expect(`${run.stdout}${run.stderr}`).not.toContain('not-the-password');
    expect((await labExec('pi1', ['readlink', '/run/current-system'])).stdout).toBe(before);
  });

  it('checks the password while the system builds: a wrong one fails at once, and the build started meanwhile is stopped', async () => {
    const salt = `slow-${Date.now()}`;
    await writeFile(path.join(project, 'slow.nix'), `{ pkgs, ... }: { imports = [ ./hardware-configuration.nix ]; system.stateVersion = "24.05"; environment.systemPackages = [ (pkgs.runCommand "${salt}" { } "sleep 41; mkdir $out") ]; }\n`);
    const configFile = path.join(project, 'pideploy.json');
    const config = JSON.parse(readFileSync(configFile, 'utf8')) as { hosts: Record<string, unknown> };
    config.hosts['slow'] = { ...(config.hosts['pi1'] as object), configuration: './slow.nix', tags: ['slow'] };
    await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);
    const wrongFile = path.join(path.dirname(passwordFile), 'wrong-password');
    await writeFile(wrongFile, 'not-the-password\n', { mode: 0o600 });
    // The derivation's builder, under qemu here: `busybox sleep 41` (no other test sleeps 41 s).
    const builderRunning = () => isProcessRunning('busybox sleep 41');
    let builderSeen = false;
    const started = performance.now();
    const deploying = pideploy(['deploy', 'slow', '--sudo-password-file', wrongFile, '--json'], project, env);
    let finished = false;
    void deploying.finally(() => (finished = true));
    while (!finished) {
      builderSeen ||= await builderRunning();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const run = await deploying;
    const seconds = (performance.now() - started) / 1000;
    expect(run.code).toBe(1);
    const events = run.stdout.trim().split('\n').map((line) => JSON.parse(line) as { event?: { type: string; phase?: string }; result?: { results: { error?: { code: string } }[] } });
    expect(events.at(-1)?.result?.results[0]?.error?.code).toBe('PIDEPLOY_SUDO_PASSWORD_WRONG');
    // The build ran while the password was checked (its phase never began: the host failed first)…
    expect(events.some((line) => line.event?.type === 'build-start')).toBe(true);
    expect(builderSeen).toBe(true);
    expect(events.some((line) => line.event?.type === 'phase-start' && line.event.phase === 'build')).toBe(false);
    // …and was not waited for (it takes 40 s), nor left running.
    expect(seconds).toBeLessThan(20);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(await builderRunning()).toBe(false);
  });

  it('on a real terminal the prompt is not drawn over while the system builds; what the build said meanwhile follows the answer', async () => {
    const salt = `tty-${Date.now()}`;
    await writeFile(path.join(project, 'tty.nix'), `{ pkgs, ... }: { imports = [ ./hardware-configuration.nix ]; system.stateVersion = "24.05"; environment.systemPackages = [ (pkgs.runCommand "${salt}" { } "sleep 3; mkdir $out") ]; }\n`);
    const configFile = path.join(project, 'pideploy.json');
    const config = JSON.parse(readFileSync(configFile, 'utf8')) as { hosts: Record<string, { configuration: string }> };
    config.hosts['tty'] = { ...(config.hosts['pi1'] as { configuration: string }), configuration: './tty.nix' };
    await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);
    const prompt = '[sudo] password for deploy@pi1: ';
    // Live progress (no CI), and the answer typed 2 s after the prompt shows: the build runs meanwhile.
    const run = await runBuiltPideployOnTerminal(['deploy', 'tty'], { env: { ...env, CI: '' }, cwd: project, prompt, keys: [`${LAB_SUDO_PASSWORD}\r`], typeDelayMs: 2000 });
    // The transcript is shown only when the run failed.
    expect(run.exitCode, `pty transcript (${run.ms} ms, exit ${run.exitCode}):\n${run.transcript}`).toBe(0);
    const promptAt = run.transcript.indexOf(prompt);
    expect(promptAt).toBeGreaterThanOrEqual(0);
    expect(run.transcript.split(prompt)).toHaveLength(2);
    // Nothing between the question and the end of its answer line, and the build's lines come after it.
    expect(run.transcript.slice(promptAt + prompt.length, promptAt + prompt.length + 2)).toBe('\r\n');
    expect(run.transcript.indexOf(salt, promptAt)).toBeGreaterThan(promptAt);
    expect(run.transcript).not.toContain(LAB_SUDO_PASSWORD);
    expect(run.transcript).toMatch(/^tty +confirmed/mu);
    // Every line names the host as pideploy.json does, also the activation's (its SSH alias is pi1).
    expect(run.transcript).toContain('[tty] switch /nix/store/');
    expect(run.transcript).not.toMatch(/^\[pi1\]/mu);
  });

  it('on a terminal, a deployment to several hosts asks first: no touches nothing, yes goes on to the password; --yes does not ask', async () => {
    const prompts = /\[y\/N\] |password for deploy@pi1: /u;
    const question = 'deploy (switch) to 2 hosts: pi1, pi3? [y/N] ';
    const loginsBefore = status.hosts.map((host) => sshLoginCount(host));
    const declined = await runBuiltPideployOnTerminal(['deploy', 'pi1', 'pi3'], { env, cwd: project, prompt: prompts, keys: ['n\r'] });
    expect(declined.exitCode, declined.transcript).toBe(1);
    expect(declined.transcript).toContain(question);
    expect(declined.transcript).toContain('pideploy: deploy (switch): not done, nothing was touched');
    expect(declined.transcript).not.toContain('password for');
    expect(status.hosts.map((host) => sshLoginCount(host))).toEqual(loginsBefore);
    const accepted = await runBuiltPideployOnTerminal(['deploy', 'pi1', 'pi3'], { env, cwd: project, prompt: prompts, keys: ['y\r', `${LAB_SUDO_PASSWORD}\r`] });
    expect(accepted.exitCode, accepted.transcript).toBe(0);
    expect(accepted.transcript.split(question)).toHaveLength(2);
    expect(accepted.transcript).toMatch(/^pi1 +(confirmed|skipped)/mu);
    expect(accepted.transcript).toMatch(/^pi3 +(confirmed|skipped)/mu);
    const unasked = await runBuiltPideployOnTerminal(['deploy', 'pi1', 'pi3', '--yes'], { env, cwd: project, prompt: prompts, keys: [`${LAB_SUDO_PASSWORD}\r`] });
    expect(unasked.exitCode, unasked.transcript).toBe(0);
    expect(unasked.transcript).not.toContain('[y/N]');
  });

  it('refuses a hand-edited pins.nix before connecting anywhere (one line + hint, exit 1)', async () => {
    const pinsNix = path.join(project, 'pins.nix');
    const original = readFileSync(pinsNix, 'utf8');
    const loginsBefore = status.hosts.map((host) => sshLoginCount(host));
    try {
      await writeFile(pinsNix, original.replace('sha256 = "', 'sha256 = "1'));
      const run = await pideploy(['deploy', 'pi1', '--sudo-password-file', passwordFile], project, env);
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/^pideploy: .*pins\.nix does not match pins\.json/mu);
      expect(run.stderr).toMatch(/^hint: /mu);
      expect(status.hosts.map((host) => sshLoginCount(host))).toEqual(loginsBefore);
    } finally {
      await writeFile(pinsNix, original);
    }
  });

  it('finds pideploy.json from a subdirectory for status (the host name resolves to its target there too)', async () => {
    const sub = path.join(project, 'hosts', 'notes');
    await mkdir(sub, { recursive: true });
    const named = await pideploy(['status', 'pi1', '--json'], sub, env);
    expect(named.code, named.stderr).toBe(0);
    const all = await pideploy(['status', '--json'], sub, env);
    expect(all.code, all.stderr).toBe(0);
    const running = (JSON.parse(named.stdout.trim().split('\n').at(-1) ?? '{}') as { result: { host: string; runningSystem: string }[] }).result;
    expect(running[0]?.runningSystem).toBe((await labExec('pi1', ['readlink', '-e', '/run/current-system'])).stdout.trim());
  });

  it("--substitute-on-destination (or the host's pideploy.json setting): the host fetches what its own binary cache has; only the rest goes over SSH", async () => {
    // 2 MiB probes that only this run builds, in a signed binary cache that pi1 trusts (under /var, which the lab hosts share).
    const cacheDir = await mkdtemp('/var/tmp/pideploy-substitute-');
    const keyDir = await mkdtemp(path.join(os.tmpdir(), 'pideploy-substitute-key-'));
    const [secretKey, publicKey] = [path.join(keyDir, 'secret'), path.join(keyDir, 'public')];
    expect(spawnSync('nix-store', ['--generate-binary-cache-key', 'pideploy-substitute-1', secretKey, publicKey], { env }).status).toBe(0);
    // pi1's configuration (a copy: the bundle holds one configuration.nix, the host's) and the probe.
    await writeFile(path.join(project, 'substitute-base.nix'), readFileSync(path.join(project, 'configuration.nix'), 'utf8'));
    const config = JSON.parse(readFileSync(path.join(project, 'pideploy.json'), 'utf8')) as { hosts: Record<string, { configuration: string; substituteOnDestination?: boolean }> };
    config.hosts['pi1']!.configuration = './substitute.nix';
    const viaFlag = path.join(project, 'substitute-flag.json');
    await writeFile(viaFlag, JSON.stringify(config));
    config.hosts['pi1']!.substituteOnDestination = true;
    const viaSetting = path.join(project, 'substitute-setting.json');
    await writeFile(viaSetting, JSON.stringify(config));

    const nixConf = (await labExec('pi1', ['cat', '/etc/nix/nix.conf'])).stdout;
    try {
      await labExec('pi1', ['sh', '-c', `printf '%s\\n' 'extra-substituters = file://${cacheDir}' 'extra-trusted-public-keys = ${readFileSync(publicKey, 'utf8').trim()}' >> /etc/nix/nix.conf`]);
      for (const [configFile, extra] of [[viaSetting, []], [viaFlag, ['--substitute-on-destination']]] as const) {
        await writeFile(path.join(project, 'substitute.nix'), `{ pkgs, ... }: { imports = [ ./substitute-base.nix ]; environment.etc."probe".source = pkgs.runCommand "substitute-probe" { nonce = "${Date.now()}"; } "head -c 2097152 /dev/urandom > $out"; }\n`);
        const build = await pideploy(['build', 'pi1', '--config', configFile], project, env);
        expect(build.code, build.stderr).toBe(0);
        const probe = realpathSync(path.join(build.stdout.trim(), 'toplevel', 'etc', 'probe'));
        const pushed = spawnSync('nix', ['copy', '--to', `file://${cacheDir}?secret-key=${secretKey}&compression=none`, probe], { env, encoding: 'utf8' });
        expect(pushed.status, pushed.stderr).toBe(0);
        const run = await pideploy(['deploy', 'pi1', '--config', configFile, ...extra, '--sudo-password-file', passwordFile, '--json'], project, env);
        expect(run.code, run.stderr).toBe(0);
        const [host] = deployResultsOf<{ ok: boolean; toplevel: string; copy: { pathsSent: string[]; pathsPresent: string[] } }>(run.stdout);
        // The probe came from the host's cache: valid there, not sent; the new system itself was sent.
        expect(host?.copy.pathsSent).not.toContain(probe);
        expect(host?.copy.pathsPresent).toContain(probe);
        expect(host?.copy.pathsSent).toContain(host?.toplevel);
        expect((await labExec('pi1', ['nix-store', '--check-validity', probe])).exitCode).toBe(0);
      }
      // The flag does not go with the fleet cache, whose cache is then the hosts' only substituter.
      const both = await pideploy(['deploy', 'pi1', '--config', viaFlag, '--substitute-on-destination', '--cache', '--sudo-password-file', passwordFile], project, env);
      expect(both.code).toBe(2);
      expect(both.stderr).toMatch(/^pideploy: substituting on the hosts from their own caches and the fleet cache do not go together/u);
    } finally {
      await labExec('pi1', ['sh', '-c', `cat > /etc/nix/nix.conf <<'EOF'\n${nixConf}EOF`]);
      await rm(cacheDir, { recursive: true, force: true });
      await rm(keyDir, { recursive: true, force: true });
    }
  });

  it('--specialisation (or the host\'s pideploy.json specialisation): the host runs that specialisation of its new system, which it boots by default; status says so; an unknown one is named before anything is copied', async () => {
    const configFile = path.join(project, 'pideploy.json');
    const original = readFileSync(configFile, 'utf8');
    const config = JSON.parse(original) as { hosts: Record<string, unknown> };
    // pi3's configuration (a copy: a bundle holds one configuration.nix) with a specialisation.
    await writeFile(path.join(project, 'kiosk-common.nix'), readFileSync(path.join(project, 'configuration.nix')));
    await writeFile(path.join(project, 'kiosk.nix'), '{ ... }: { imports = [ ./kiosk-common.nix ]; specialisation.kiosk.configuration = { environment.etc."mode".text = "kiosk\\n"; }; }\n');
    config.hosts['kiosk'] = { ...(config.hosts['pi3'] as object), configuration: './kiosk.nix', specialisation: 'kiosk', tags: ['kiosk'] };
    await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);
    const onPi3 = async (script: string) => (await labExec('pi3', ['sh', '-c', script])).stdout.trim();
    try {
      const run = await pideploy(['deploy', 'kiosk', '--sudo-password-file', passwordFile, '--json'], project, env);
      expect(run.code, run.stderr).toBe(0);
      const [host] = deployResultsOf<{ ok: boolean; toplevel: string; activation: { outcome: string; specialisation?: string } }>(run.stdout);
      expect(host?.activation).toMatchObject({ outcome: 'confirmed', specialisation: 'kiosk' });
      const kiosk = realpathSync(path.join(host!.toplevel, 'specialisation', 'kiosk'));
      expect(await onPi3('readlink /run/current-system')).toBe(kiosk);
      expect(await onPi3('readlink -f /nix/var/nix/profiles/system')).toBe(host?.toplevel);
      expect(await onPi3('cat /etc/mode')).toBe('kiosk');

      const short = await pideploy(['status', 'kiosk', '--short'], project, env);
      expect(short.stdout).toMatch(/^kiosk .* specialisation kiosk$/mu);
      const long = await pideploy(['status', 'kiosk'], project, env);
      expect(long.stdout).toContain(`running:   ${kiosk} (the profile's specialisation kiosk)`);

      // Again: nothing to do. The system itself (--specialisation of another name is checked first).
      const again = await pideploy(['deploy', 'kiosk', '--sudo-password-file', passwordFile, '--json'], project, env);
      expect(deployResultsOf<{ activation: { outcome: string } }>(again.stdout)[0]?.activation.outcome).toBe('skipped');
      const activations = await onPi3('wc -l < /etc/lab-activations.log');
      const unknown = await pideploy(['deploy', 'kiosk', '--specialisation', 'kisok', '--sudo-password-file', passwordFile], project, env);
      expect(unknown.code).toBe(1);
      expect(`${unknown.stdout}${unknown.stderr}`).toContain(`kiosk's system ${host?.toplevel} has no specialisation "kisok"`);
      expect(`${unknown.stdout}${unknown.stderr}`).toContain('it has "kiosk"');
      expect(await onPi3('wc -l < /etc/lab-activations.log')).toBe(activations);
      const boot = await pideploy(['deploy', 'kiosk', '--action', 'boot', '--sudo-password-file', passwordFile], project, env);
      expect([boot.code, boot.stderr.split('\n')[0]]).toEqual([2, 'pideploy: --specialisation with --action boot: a boot starts the system itself, not one of its specialisations']);
      expect(await onPi3('readlink /run/current-system')).toBe(kiosk);
      const both = await pideploy(['deploy', 'kiosk', '--specialisation', 'kiosk', '--no-specialisation'], project, env);
      expect([both.code, both.stderr.split('\n')[0]]).toEqual([2, 'pideploy: --specialisation and --no-specialisation contradict each other']);

      // diff compares what the host runs with what it would run: the specialisation (nothing), or the system itself.
      const toplevelArgs = ['--toplevel', host!.toplevel];
      expect((await pideploy(['diff', 'kiosk', ...toplevelArgs], project, env)).stdout.trim()).toBe('kiosk: no changes');
      const toSystem = await pideploy(['diff', 'kiosk', ...toplevelArgs, '--no-specialisation'], project, env);
      expect(toSystem.code, toSystem.stderr).toBe(0);
      // (The system holds its specialisation: the same name, bigger.)
      expect(toSystem.stdout.trim()).toMatch(/^nixos-system-pi: \+[\d.]+ KiB$/u);

      // --no-specialisation: the system itself this time.
      const plain = await pideploy(['deploy', 'kiosk', '--no-specialisation', '--sudo-password-file', passwordFile, '--json'], project, env);
      expect(plain.code, plain.stderr).toBe(0);
      expect(await onPi3('readlink /run/current-system')).toBe(host?.toplevel);
      expect(await onPi3('cat /etc/mode 2>/dev/null || echo none')).toBe('none');
    } finally {
      await writeFile(configFile, original);
    }
  });

  it('refuses a host another deployment has (awaiting its confirmation) before anything is copied or a key is put there', async () => {
    const configFile = path.join(project, 'pideploy.json');
    const original = readFileSync(configFile, 'utf8');
    const config = JSON.parse(original) as { hosts: Record<string, { keys?: unknown }> };
    config.hosts['pi1']!.keys = { 'busy-probe': { command: ['echo', 'not while another deployment has the host'] } };
    await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);
    const onPi1 = async (script: string) => (await labExec('pi1', ['sh', '-c', script])).stdout.trim();
    // Another deployment (as another deployer's would), activated and awaiting its confirmation for 2 minutes.
    const script = '/etc/nixos/current-configuration/bin/activate';
    const id = `busy-${Date.now()}`;
    const started = await labExec('pi1', ['sh', '-c', `sh ${script} switch --toplevel "$(readlink -e /run/current-system)" --deploy-id ${id} --confirm-timeout 120 --no-wait`]);
    expect(started.exitCode, started.stderr).toBe(0);
    try {
      const since = Date.now();
      while (!(await onPi1(`cat /run/pideploy/${id}.state`)).includes('state=awaiting-confirmation')) {
        expect(Date.now() - since).toBeLessThan(30_000);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      const run = await pideploy(['deploy', 'pi1', '--sudo-password-file', passwordFile, '--json'], project, env);
      expect(run.code).toBe(1);
      const [host] = deployResultsOf<{ ok: boolean; copy?: unknown; keys?: unknown; phases: { phase: string }[]; error?: { code: string; message: string; hint: string } }>(run.stdout);
      expect(host?.error).toMatchObject({
        code: 'PIDEPLOY_ACTIVATION_BUSY',
        message: `pi1 is busy, nothing was copied or changed: deployment ${id} is awaiting-confirmation there`,
        hint: 'wait until it ends (pideploy status pi1 shows it), then pideploy deploy pi1',
      });
      expect(host?.copy).toBeUndefined();
      expect(host?.phases.map((phase) => phase.phase)).not.toContain('copy');
      expect(await onPi1('test -e /run/keys/busy-probe && echo there || echo absent')).toBe('absent');
      expect(await onPi1(`cat /run/pideploy/${id}.state`)).toContain('state=awaiting-confirmation');
    } finally {
      await labExec('pi1', ['sh', script, 'abort', id]);
      await writeFile(configFile, original);
    }
  });

  it('a host on another nixpkgs pin (pideploy.json "nixpkgs"): built from that pin, the others from theirs; a pin that pins.json lacks is refused before any build', async () => {
    const configFile = path.join(project, 'pideploy.json');
    const original = readFileSync(configFile, 'utf8');
    const added = await pideploy(['pin', 'add', 'nixpkgs-next', '--github', 'NixOS/nixpkgs', '--branch', 'nixos-24.11'], project, env);
    expect(added.code, added.stderr).toBe(0);
    const nextRev = status.nixpkgs?.revisions[1]?.rev;
    expect(nextRev).toBeDefined();
    const config = JSON.parse(original) as { hosts: Record<string, Record<string, unknown>> };
    config.hosts['pi2'] = { ...config.hosts['pi2'], nixpkgs: 'nixpkgs-next' };
    await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);
    try {
      const run = await pideploy(['deploy', 'pi1', 'pi2', '--parallel', '2', '--sudo-password-file', passwordFile, '--json'], project, env);
      expect(run.code, run.stderr).toBe(0);
      const results = deployResultsOf<{ host: string; toplevel: string; bundle: string; sharedBuildWith?: string }>(run.stdout);
      const [pi1, pi2] = [results.find((host) => host.host === 'pi1'), results.find((host) => host.host === 'pi2')];
      // The same configuration, two package sets: two systems (the NixOS label is the nixpkgs version).
      expect(pi1?.toplevel).toMatch(/-24\.05-lab$/u);
      expect(pi2?.toplevel).toMatch(/-24\.11-lab$/u);
      expect([pi1?.sharedBuildWith, pi2?.sharedBuildWith]).toEqual([undefined, undefined]);
      expect((await labExec('pi2', ['readlink', '/run/current-system'])).stdout.trim()).toBe(pi2?.toplevel);
      const manifest = JSON.parse(readFileSync(path.join(pi2!.bundle, 'manifest.json'), 'utf8')) as { pin: { name: string; rev: string } };
      expect(manifest.pin).toMatchObject({ name: 'nixpkgs-next', rev: nextRev });

      config.hosts['pi2'] = { ...config.hosts['pi2'], nixpkgs: 'nixpkgs-nope' };
      await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);
      const unknown = await pideploy(['deploy', 'pi2', '--sudo-password-file', passwordFile], project, env);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toMatch(/^pideploy: \S+pins\.json has no pin "nixpkgs-nope"$/mu);
      expect(unknown.stderr).toContain('hint: pin it: pideploy pin add nixpkgs-nope');
      expect((await labExec('pi2', ['readlink', '/run/current-system'])).stdout.trim()).toBe(pi2?.toplevel);

      // A pin a host is built from is not removed; once no host names it, it is (pins.json and pins.nix).
      config.hosts['pi2'] = { ...config.hosts['pi2'], nixpkgs: 'nixpkgs-next' };
      await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);
      const pinsBefore = readFileSync(path.join(project, 'pins.json'), 'utf8');
      const inUse = await pideploy(['pin', 'remove', 'nixpkgs-next'], project, env);
      expect([inUse.code, inUse.stderr.split('\n')[0]]).toEqual([2, `pideploy: pin nixpkgs-next is the nixpkgs of pi2 (${configFile})`]);
      expect(readFileSync(path.join(project, 'pins.json'), 'utf8')).toBe(pinsBefore);
      await writeFile(configFile, original);
      const removed = await pideploy(['pin', 'remove', 'nixpkgs-next'], project, env);
      expect([removed.code, removed.stdout]).toEqual([0, 'removed nixpkgs-next\nwrote pins.json and pins.nix\n']);
      expect(readFileSync(path.join(project, 'pins.json'), 'utf8')).not.toContain('nixpkgs-next');
      expect(readFileSync(path.join(project, 'pins.nix'), 'utf8')).not.toContain('nixpkgs-next');
      const again = await pideploy(['pin', 'remove', 'nixpkgs-next'], project, env);
      expect([again.code, again.stderr.split('\n')[0]]).toEqual([1, `pideploy: there is no pin 'nixpkgs-next' in ${path.join(project, 'pins.json')}`]);
      // What is left still builds and deploys: nothing to do for pi1.
      const after = await pideploy(['deploy', 'pi1', '--sudo-password-file', passwordFile, '--json'], project, env);
      expect(deployResultsOf<{ activation: { outcome: string } }>(after.stdout)[0]?.activation.outcome).toBe('skipped');
    } finally {
      await writeFile(configFile, original);
    }
  });
});

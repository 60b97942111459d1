import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, constants, existsSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEPLOYMENTS_KEPT, activateArguments, canRollBack, scriptCommand, newDeployId, parseActivationState, renderActivationScript, stateCanRollBack, DEPLOY_ID_PATTERN, isFinalActivationState } from './activation-script.js';
import { busyErrorOf, stateFromDecisionOutput, withoutPrintedState } from './activate.js';
import { temporaryDirectory } from './test-support/temporary-directory.js';

describe('renderActivationScript', () => {
  it('is valid POSIX sh (dash -n) and carries the protocol marker', () => {
    const script = renderActivationScript();
    expect(script.split('\n')[1]).toBe('# pideploy-activate-protocol: 4');
    expect(() => execFileSync('sh', ['-n'], { input: script })).not.toThrow();
  });

  it('prints usage and exits 2 on nonsense, refuses non-root starts', () => {
    const script = renderActivationScript();
    let status = 0;
    try {
      execFileSync('sh', ['-c', script, 'activate', 'frobnicate'], { stdio: 'pipe' });
    } catch (error) {
      status = (error as { status: number }).status;
    }
    expect(status).toBe(2);
  });
});

describe('the script\'s helpers (run by a real sh: everything before the command dispatch, then a probe)', () => {
  const script = renderActivationScript();
  const definitions = script.slice(0, script.indexOf('[ $# -ge 1 ] || usage'));
  const probe = (body: string, umask = '077') => execFileSync('sh', ['-c', `umask ${umask}\n${definitions}\n${body}`], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });

  it('highest_generation finds the highest system-N-link without spawning ls/sed/sort (none: empty)', () => {
    const profiles = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-profiles-'));
    expect(probe(`profiles_dir=${profiles}; highest_generation; printf '[%s]' "$highest"`)).toBe('[]');
    for (const name of ['system-2-link', 'system-10-link', 'system-9-link', 'system-x-link', 'system', 'other-99-link']) execFileSync('ln', ['-s', '/nonexistent', path.join(profiles, name)]);
    expect(probe(`profiles_dir=${profiles}; highest_generation; printf '[%s]' "$highest"`)).toBe('[10]');
  });

  it('save_state writes one key=value line per field, a message with line breaks on one line, mode 644 whatever the caller\'s umask', () => {
    const stateDir = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-state-'));
    probe(`state_dir=${stateDir}; st_id=d1; st_state=failed; st_action=switch; st_specialisation='kiosk mode'; st_message='first line
second line'; save_state >/dev/null`);
    const text = execFileSync('cat', [path.join(stateDir, 'd1.state')], { encoding: 'utf8' });
    expect(parseActivationState(text)).toMatchObject({ id: 'd1', state: 'failed', action: 'switch', specialisation: 'kiosk mode', message: 'first line second line' });
    expect(text.split('\n').filter(Boolean)).toHaveLength(14);
    expect((statSync(path.join(stateDir, 'd1.state')).mode & 0o777).toString(8)).toBe('644');
    expect(readdirSync(stateDir)).toEqual(['d1.state']);
  });

  it('save_state wakes the waiters through the deployment\'s FIFO with one line, and never blocks without a reader', () => {
    const stateDir = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-state-'));
    const fifo = path.join(stateDir, 'd1.wake');
    execFileSync('mkfifo', ['-m', '600', fifo]);
    // Nobody reads: the line is dropped (a waiter reads the state file after opening the FIFO). A blocking write would time out here.
    execFileSync('sh', ['-c', `${definitions}\nstate_dir=${stateDir}; st_id=d1; st_state=activating; st_action=switch; save_state >/dev/null`], { timeout: 5000, env: { PATH: '/usr/bin:/bin' } });
    // A waiter holds it open: one line per state change.
    const reader = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    try {
      probe(`state_dir=${stateDir}; st_id=d1; st_state=activating; st_action=switch; save_state >/dev/null; st_state=awaiting-confirmation; save_state >/dev/null`);
      const buffer = Buffer.alloc(16);
      expect(buffer.subarray(0, readSync(reader, buffer)).toString()).toBe('\n\n');
    } finally {
      closeSync(reader);
    }
    expect(readdirSync(stateDir).sort()).toEqual(['d1.state', 'd1.wake']);
  });

  /** A stand-in `name` printing `output` that leaves a file behind when called. */
  const recordingTool = (name: string, output: string) => {
    const tools = temporaryDirectory(path.join(os.tmpdir(), `pideploy-fake-${name}-`));
    const called = path.join(tools, `${name}-was-called`);
    writeFileSync(path.join(tools, name), `#!/bin/sh\n: >${called}\necho ${output}\n`);
    chmodSync(path.join(tools, name), 0o755);
    return { tools, called };
  };
  /** Runs `body` after the script's definitions under `shell`, with `tools` first on PATH and the kernel's files in `procDir`. */
  const underShell = (shell: string, tools: string, procDir: string, body: string, env: Record<string, string>) =>
    execFileSync(shell, ['-c', `${definitions}\nproc_dir=${procDir}\n${body}`], { encoding: 'utf8', env: { PATH: `${tools}:/usr/bin:/bin`, ...env } });

  it('read_clock asks the shell (bash: $EPOCHSECONDS), else the kernel (dash: /proc, no process), else one date process; an EPOCHSECONDS from the environment is not trusted', () => {
    const { tools, called } = recordingTool('date', '42');
    const clockUnder = (shell: string, procDir = '/proc') =>
      Number(underShell(shell, tools, procDir, 'read_clock; first=$clock; read_clock; printf \'%s %s\' "$first" "$clock"', { EPOCHSECONDS: '7' }).split(' ')[1]);
    const now = () => Math.floor(Date.now() / 1000);
    // dash has no clock of its own: boot time + uptime from /proc, within 2 s of the real time, without date.
    expect(Math.abs(clockUnder('dash') - now())).toBeLessThanOrEqual(2);
    expect(existsSync(called)).toBe(false);
    // bash keeps its own ($EPOCHSECONDS): the real time even without a readable /proc, without date.
    expect(Math.abs(clockUnder('bash', path.join(tools, 'no-proc')) - now())).toBeLessThanOrEqual(2);
    expect(existsSync(called)).toBe(false);
    // Without a readable /proc: one date process.
    expect(clockUnder('dash', path.join(tools, 'no-proc'))).toBe(42);
    expect(existsSync(called)).toBe(true);
  });

  it('is_root reads the effective uid from /proc (no id process; an EUID from the environment is not trusted, bash would take it), else asks id', () => {
    const { tools, called } = recordingTool('id', '0');
    const rootUnder = (shell: string, procDir = '/proc') => underShell(shell, tools, procDir, 'if is_root; then echo yes; else echo no; fi', { EUID: '12345' }).trim();
    const expected = process.geteuid?.() === 0 ? 'yes' : 'no';
    expect(rootUnder('dash')).toBe(expected);
    expect(rootUnder('bash')).toBe(expected);
    expect(existsSync(called)).toBe(false);
    expect(rootUnder('dash', path.join(tools, 'no-proc'))).toBe('yes');
    expect(existsSync(called)).toBe(true);
  });

  it('a refused confirmation (the deployment already rolled back) says why, then prints the state file: the deployer reads both from that one output', () => {
    const stateDir = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-state-'));
    // The uid check reads the kernel's view: a stand-in /proc says root, whoever runs the test.
    const proc = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-proc-'));
    mkdirSync(path.join(proc, 'self'));
    writeFileSync(path.join(proc, 'self', 'status'), 'Name:\tsh\nUid:\t0\t0\t0\t0\n');
    probe(`state_dir=${stateDir}; st_id=d3; st_state=failed-rolled-back; st_action=switch; st_toplevel=/nix/store/t; st_message='switch-to-configuration switch exited 1; rolled back'; save_state >/dev/null`);
    const output = probe(`state_dir=${stateDir}; proc_dir=${proc}; cmd_decide confirmed d3; echo "status $?"`);
    expect(output.trim().split('\n').at(-1)).toBe('status 1');
    const printed = output.slice(0, output.lastIndexOf('status 1'));
    expect(stateFromDecisionOutput(printed)).toEqual(parseActivationState(readFileSync(path.join(stateDir, 'd3.state'), 'utf8')));
    const said = withoutPrintedState(printed).trim();
    expect(said).toContain('failed-rolled-back (switch-to-configuration switch exited 1; rolled back)');
    expect(said).not.toContain('deadline=');
  });

  it('take_host gives the host to one deployment at a time: another start (or a rollback) is refused (exit 3, naming it) until its state is final; no process', () => {
    for (const shell of ['dash', 'bash']) {
      const stateDir = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-state-'));
      const run = (body: string) => spawnSync(shell, ['-c', `${definitions}\nstate_dir=${stateDir}\n${body}`], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
      // Taking a free host runs no process: with nothing on the PATH (no mkdir, ln, rm, readlink) it
      // works the same. Taking one over writes the state of the deployment it ends (mv).
      const take = (id: string, after = '', before = '', pathDirs = '/nonexistent') => run(`${before}\nPATH=${pathDirs}; id=${id}; take_host${after}`);
      const locks = () => readdirSync(stateDir).filter((name) => name.startsWith('active.')).sort();
      const holder = () => { const newest = locks().sort((a, b) => Number(a.slice(7)) - Number(b.slice(7))).at(-1); return newest === undefined ? undefined : readFileSync(path.join(stateDir, newest), 'utf8'); };
      const later = Math.floor(Date.now() / 1000) + 600;
      // d1 takes the host and awaits its confirmation.
      expect(take('d1', ' && echo took').stdout).toBe('took\n');
      expect([locks(), holder()]).toEqual([['active.1'], 'd1\n']);
      run(`st_id=d1; st_state=awaiting-confirmation; st_bundle=/nix/store/b-bundle; st_deadline=${later}; save_state >/dev/null`);
      const refused = take('d2', '; echo took');
      expect([refused.status, refused.stdout]).toEqual([3, '']);
      // (bash may also say what it thought of ~/.bashrc: node gives it a socket for stdin, as sshd would.)
      expect(refused.stderr).toMatch(new RegExp(`^activate: busy: deployment d1 is awaiting-confirmation on this host \\(confirmation deadline ${later}\\); one deployment at a time \\(if nothing runs it any more, remove ${stateDir}/active.1\\)$`, 'mu'));
      // … and the fields the deployer reads (its bundle: what to run confirm or abort with).
      expect(refused.stderr).toMatch(new RegExp(`^@@pideploy-busy id=d1 state=awaiting-confirmation deadline=${later} bundle=/nix/store/b-bundle log= lock=${stateDir}/active.1$`, 'mu'));
      // The deployer's error from exactly that output: how to end d1 with its own bundle's script.
      expect(busyErrorOf('pi1', { exitCode: refused.status, stderr: refused.stderr }, ['activate', 'switch'])).toMatchObject({
        code: 'PIDEPLOY_ACTIVATION_BUSY',
        message: expect.stringMatching(/^pi1 is busy, nothing was changed: deployment d1 is awaiting-confirmation there \(confirmation deadline \S+Z by the host's clock\)/u),
        hint: expect.stringContaining('sudo /nix/store/b-bundle/bin/activate confirm d1 (keep it) or abort d1 (roll it back)'),
      });
      // Nor does a rollback go ahead meanwhile (as root: a stand-in /proc says so).
      const proc = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-proc-'));
      mkdirSync(path.join(proc, 'self'));
      writeFileSync(path.join(proc, 'self', 'status'), 'Name:\tsh\nUid:\t0\t0\t0\t0\n');
      const rollback = run(`proc_dir=${proc}; cmd_rollback; echo rolled`);
      expect([rollback.status, rollback.stdout]).toEqual([3, '']);
      expect(rollback.stderr).toMatch(/^activate: busy: deployment d1 is awaiting-confirmation/mu);
      // Once d1's state is final the host is free: the next start takes it, and nothing of d1's state leaks into its own.
      run('load_state d1; st_state=confirmed; save_state >/dev/null');
      expect(take('d3', ' && printf "[%s|%s|%s]" "$st_id" "$st_state" "$st_deadline"').stdout).toBe('[||]');
      expect([locks(), holder()]).toEqual([['active.1', 'active.2'], 'd3\n']);
      // Still starting (no deadline): refused, pointing at its log where it has one.
      run('st_id=d3; st_state=starting; save_state >/dev/null');
      writeFileSync(path.join(stateDir, 'd3.log'), '');
      const starting = take('d4');
      expect(starting.status).toBe(3);
      expect(busyErrorOf('pi1', { exitCode: starting.status, stderr: starting.stderr }, ['activate', 'switch'])?.hint).toBe(
        `wait until it ends (its log: ${stateDir}/d3.log on the host); if nothing runs it any more, remove ${stateDir}/active.2 on the host`,
      );
      // "starting" a minute after it said so: its start was cut off before the worker ran, the host is taken over.
      const cutOff = take('d4', ' && echo took', `st_id=d3; st_state=starting; st_updated=$(( $(date +%s) - 120 )); save_state >/dev/null`, '/usr/bin:/bin');
      expect([cutOff.stdout, cutOff.stderr]).toEqual(['took\n', expect.stringContaining('deployment d3 never got past starting (its start was cut off before the activation ran); going ahead')]);
      expect([locks(), holder()]).toEqual([['active.1', 'active.2', 'active.3'], 'd4\n']);
      // The deployment taken over is over for good, and says who took the host.
      expect(readFileSync(path.join(stateDir, 'd3.state'), 'utf8')).toMatch(/^state=failed\n(?:.*\n)*message=left starting; deployment d4 took the host over\n/mu);
      // A lock whose id is not written yet: refused.
      writeFileSync(path.join(stateDir, 'active.3'), '');
      expect(take('d4').stderr).toMatch(/^activate: busy: another deployment is starting on this host/mu);
      expect(take('d4').status).toBe(3);
      // Awaiting confirmation a minute past its deadline: its watchdog is gone, the host is taken over.
      writeFileSync(path.join(stateDir, 'active.3'), 'd3\n');
      run(`st_id=d3; st_state=awaiting-confirmation; st_deadline=${later - 720}; save_state >/dev/null`);
      const takenOver = take('d4', ' && echo took', '', '/usr/bin:/bin');
      expect(takenOver.stdout).toBe('took\n');
      expect(takenOver.stderr).toContain('deployment d3 was left awaiting confirmation past its deadline (its watchdog is gone); going ahead');
      expect([locks(), holder()]).toEqual([['active.1', 'active.2', 'active.3', 'active.4'], 'd4\n']);
      // A late `confirm d3` (what its busy hint said to run) no longer confirms it: it is failed.
      expect(readFileSync(path.join(stateDir, 'd3.state'), 'utf8')).toMatch(/^state=failed\n(?:.*\n)*message=left awaiting-confirmation; deployment d4 took the host over\n/mu);
      const late3 = run(`proc_dir=${proc}; cmd_decide confirmed d3`);
      expect([late3.status, late3.stdout.split('\n')[0]]).toEqual([1, 'activate: d3: failed (left awaiting-confirmation; deployment d4 took the host over)']);
      // A holder whose first state is not written yet is starting: busy, not free.
      writeFileSync(path.join(stateDir, 'active.5'), 'd5\n');
      const early = take('d6');
      expect([early.status, early.stderr]).toEqual([3, expect.stringMatching(/^activate: busy: deployment d5 is starting on this host/mu)]);
      // Of two starts that both saw the host free (refuse_if_busy returned), only one creates the next lock (O_EXCL).
      run('st_id=d5; st_state=succeeded; save_state >/dev/null');
      writeFileSync(path.join(stateDir, 'active.6'), 'd6\n');
      const late = take('d7', '; echo took', 'refuse_if_busy() { lock_number=5; }');
      expect([late.status, late.stdout]).toEqual([3, '']);
      expect(late.stderr).toMatch(new RegExp(`^@@pideploy-busy id= state=starting deadline= bundle= log= lock=${stateDir}/active.6$`, 'mu'));
      expect(readFileSync(path.join(stateDir, 'active.6'), 'utf8')).toBe('d6\n');
      // A lock that cannot be created at all (here: the state directory is a file, which stops root too) is an error, not "busy".
      const notADirectory = path.join(stateDir, 'd1.state');
      const denied = spawnSync(shell, ['-c', `${definitions}\nstate_dir=${notADirectory}\nid=d8; take_host`], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
      expect([denied.status, denied.stderr]).toEqual([1, expect.stringMatching(new RegExp(`^activate: cannot create ${notADirectory}/active.1 `, 'mu'))]);
    }
  });

  it(`take_host removes what finished deployments left, but for the newest ${DEPLOYMENTS_KEPT}, and the older locks: in one rm, once there are twice as many`, () => {
    for (const shell of ['dash', 'bash']) {
      const stateDir = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-state-'));
      const run = (body: string, pathDirs = '/usr/bin:/bin') => spawnSync(shell, ['-c', `${definitions}\nstate_dir=${stateDir}\nPATH=${pathDirs}\n${body}`], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
      // Deployments one minute apart (ids begin with their UTC time); each left a state file, a log,
      // a wake FIFO and a lock; some a decision or an uploaded script.
      const idOf = (index: number) => `20261207T${String(10 + Math.floor(index / 60)).padStart(2, '0')}${String(index % 60).padStart(2, '0')}00Z-${index.toString(16).padStart(6, '0')}`;
      const leave = (index: number, state: string) => {
        const id = idOf(index);
        writeFileSync(path.join(stateDir, `${id}.state`), `state=${state}\nid=${id}\n`);
        writeFileSync(path.join(stateDir, `${id}.log`), 'switching\n');
        execFileSync('mkfifo', [path.join(stateDir, `${id}.wake`)]);
        writeFileSync(path.join(stateDir, `active.${index + 1}`), `${id}\n`);
      };
      const total = DEPLOYMENTS_KEPT * 2;
      for (let index = 0; index < total; index += 1) leave(index, index === 3 ? 'activating' : 'confirmed');
      mkdirSync(path.join(stateDir, `${idOf(1)}.decision`));
      writeFileSync(path.join(stateDir, `${idOf(1)}.decision`, 'confirmed'), '');
      writeFileSync(path.join(stateDir, `activate-${idOf(2)}.sh`), '#!/bin/sh\n');
      // Twice the kept number: nothing is removed yet, and no process runs (nothing on the PATH).
      expect(run(`id=${idOf(total)}; take_host && echo took`, '/nonexistent').stdout).toBe('took\n');
      expect(readdirSync(stateDir).filter((name) => name.endsWith('.state'))).toHaveLength(total);
      run(`st_id=${idOf(total)}; st_state=confirmed; save_state >/dev/null`);
      // One more than twice: the oldest finished ones go down to the newest ${DEPLOYMENTS_KEPT}; the one still
      // activating is left alone (its deployment is not over), and so are the files of other names.
      writeFileSync(path.join(stateDir, 'notes.txt'), 'mine\n');
      const next = run(`id=${idOf(total + 1)}; take_host && echo took`);
      // (bash may also say what it thought of ~/.bashrc: node gives it a socket for stdin.)
      expect([next.stdout, next.stderr]).toEqual(['took\n', expect.not.stringMatching(/activate:|rm:/u)]);
      const left = readdirSync(stateDir).sort();
      const kept = Array.from({ length: DEPLOYMENTS_KEPT }, (_, offset) => idOf(total + 1 - DEPLOYMENTS_KEPT + offset));
      expect(left).toEqual(
        [
          ...[idOf(3), ...kept.slice(0, -1)].flatMap((id) => [`${id}.log`, `${id}.state`, `${id}.wake`]),
          `${idOf(total)}.state`,
          `active.${total + 2}`,
          'notes.txt',
        ].sort(),
      );
      expect(readFileSync(path.join(stateDir, `active.${total + 2}`), 'utf8')).toBe(`${idOf(total + 1)}\n`);
    }
  });

  it('take_host gives up a lock that a start made after reading stale locks (their older ones removed meanwhile), and takes the newest free one', () => {
    for (const shell of ['dash', 'bash']) {
      const stateDir = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-state-'));
      writeFileSync(path.join(stateDir, 'active.6'), 'd6\n');
      writeFileSync(path.join(stateDir, 'd6.state'), 'state=confirmed\nid=d6\n');
      // Its first look saw no lock at all (before active.1-5 were removed and d6 took active.6);
      // the look it takes again after giving up is the real one.
      const stale = 'refuse_if_busy() { lock_number=0; taken_over=""; refuse_if_busy() { taken_over=""; read_lock; }; }';
      const taken = spawnSync(shell, ['-c', `${definitions}\nstate_dir=${stateDir}\n${stale}\nid=d7; take_host && echo took`], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
      expect([taken.stdout, taken.stderr]).toEqual(['took\n', expect.not.stringMatching(/activate:|rm:/u)]);
      expect(readdirSync(stateDir).filter((name) => name.startsWith('active.')).sort()).toEqual(['active.6', 'active.7']);
      expect(readFileSync(path.join(stateDir, 'active.7'), 'utf8')).toBe('d7\n');
    }
  });

  it('a rollback by hand holds the host like a deployment: a start meanwhile is refused; its state file says what it did, and a failed one frees the host too', () => {
    for (const shell of ['dash', 'bash']) {
      const root = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-rollback-'));
      const [stateDir, profiles, tools, proc] = ['run', 'profiles', 'tools', 'proc'].map((name) => path.join(root, name)) as [string, string, string, string];
      for (const directory of [stateDir, profiles, tools, path.join(proc, 'self')]) mkdirSync(directory, { recursive: true });
      writeFileSync(path.join(proc, 'self', 'status'), 'Name:\tsh\nUid:\t0\t0\t0\t0\n');
      const definitionsFile = path.join(root, 'definitions.sh');
      writeFileSync(definitionsFile, definitions);
      // Generation 1's switch-to-configuration tries to start another deployment while the rollback switches to it.
      for (const generation of [1, 2]) {
        const system = path.join(root, `system-${generation}`);
        mkdirSync(path.join(system, 'bin'), { recursive: true });
        writeFileSync(
          path.join(system, 'bin', 'switch-to-configuration'),
          `#!/bin/sh\n${shell} -c '. ${definitionsFile}; state_dir=${stateDir}; id=d9; take_host' 2>${root}/concurrent.err; echo $? >${root}/concurrent.status\n`,
        );
        chmodSync(path.join(system, 'bin', 'switch-to-configuration'), 0o755);
        execFileSync('ln', ['-s', system, path.join(profiles, `system-${generation}-link`)]);
      }
      execFileSync('ln', ['-s', 'system-2-link', path.join(profiles, 'system')]);
      // nix-env -p PROFILE --switch-generation N: fails for a generation that does not exist, as the real one does.
      writeFileSync(path.join(tools, 'nix-env'), '#!/bin/sh\n[ -e "${2%/*}/system-$4-link" ] || { echo "error: generation $4 does not exist" >&2; exit 1; }\nln -sfn "system-$4-link" "$2"\n');
      // nix-store --add-root ROOT --indirect -r TARGET, as the real one does to the link.
      writeFileSync(path.join(tools, 'nix-store'), '#!/bin/sh\nln -sfn "$5" "$2"\n');
      for (const tool of ['nix-env', 'nix-store']) chmodSync(path.join(tools, tool), 0o755);
      const gcRoot = path.join(root, 'etc-nixos', 'current-configuration');
      const rollBack = (to: number) =>
        spawnSync(shell, ['-c', `${definitions}\nstate_dir=${stateDir}; proc_dir=${proc}; profile=${profiles}/system; profiles_dir=${profiles}; gc_root=${gcRoot}; bundles_dir=${root}/bundles; PATH=${tools}:/usr/bin:/bin\ncmd_rollback --to ${to}`], {
          encoding: 'utf8',
          env: { PATH: '/usr/bin:/bin' },
        });
      const states = () => readdirSync(stateDir).filter((name) => name.endsWith('.state')).map((name) => parseActivationState(readFileSync(path.join(stateDir, name), 'utf8')));

      const rolled = rollBack(1);
      expect([rolled.status, withoutPrintedState(rolled.stdout)]).toEqual([0, `activate: now on generation 1 (${root}/system-1)`]);
      const [state] = states();
      // It ends with its state file, which the deployer reads instead of asking the host again.
      expect(stateFromDecisionOutput(rolled.stdout)).toEqual(state);
      expect(state).toMatchObject({ state: 'succeeded', action: 'switch', toplevel: `${root}/system-1`, previousGeneration: 2, newGeneration: 1, exitCode: 0, message: `rolled back by hand to generation 1; ${gcRoot} -> ${root}/system-1 (no bundle of it on this host)` });
      // No bundle deployed that system here: the GC root names the system itself, not a bundle it left.
      expect(readlinkSync(gcRoot)).toBe(`${root}/system-1`);
      expect(state?.id).toMatch(/^\d{8}T\d{6}Z-rollback-\d+$/u);
      expect(state?.id).toMatch(DEPLOY_ID_PATTERN);
      expect(readFileSync(path.join(stateDir, 'active.1'), 'utf8')).toBe(`${state?.id}\n`);
      // The start made while it switched was refused, naming the rollback.
      expect(readFileSync(path.join(root, 'concurrent.status'), 'utf8')).toBe('3\n');
      const concurrent = { exitCode: Number(readFileSync(path.join(root, 'concurrent.status'), 'utf8')), stderr: readFileSync(path.join(root, 'concurrent.err'), 'utf8') };
      expect(concurrent.stderr).toMatch(new RegExp(`^activate: busy: deployment ${state?.id} is activating on this host`, 'mu'));
      // A rollback keeps no log (its output goes to whoever runs it): the deployer's hint says where to look instead.
      expect(busyErrorOf('pi1', concurrent, ['activate', 'switch'])?.hint).toBe(`wait until it ends (pideploy status pi1 shows it); if nothing runs it any more, remove ${stateDir}/active.1 on the host`);

      // A rollback that fails says so in its state, and that final state frees the host.
      const failed = rollBack(7);
      expect([failed.status, failed.stderr]).toEqual([1, expect.stringContaining('activate: cannot switch the profile to generation 7')]);
      expect(states().find((each) => each.id !== state?.id)).toMatchObject({ state: 'failed', message: 'cannot switch the profile to generation 7' });
      expect(readlinkSync(path.join(profiles, 'system'))).toBe('system-1-link');
      expect(spawnSync(shell, ['-c', `${definitions}\nstate_dir=${stateDir}; id=d10; take_host && echo took`], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } }).stdout).toBe('took\n');
      spawnSync(shell, ['-c', `${definitions}\nstate_dir=${stateDir}; st_id=d10; st_state=succeeded; st_action=switch; save_state >/dev/null`], { env: { PATH: '/usr/bin:/bin' } });

      // Interrupted (here: TERM while switch-to-configuration runs) it says so in its state, which frees the host.
      writeFileSync(path.join(root, 'system-1', 'bin', 'switch-to-configuration'), '#!/bin/sh\nkill -TERM $PPID\nsleep 0.2\n');
      const interrupted = rollBack(1);
      expect([interrupted.status, interrupted.stderr]).toEqual([1, expect.stringContaining('activate: interrupted while rolling back')]);
      expect(states().filter((each) => each.state !== 'succeeded' && each.state !== 'failed')).toEqual([]);
      expect(states().some((each) => each.message.startsWith('interrupted while rolling back'))).toBe(true);
      expect(spawnSync(shell, ['-c', `${definitions}\nstate_dir=${stateDir}; id=d11; take_host && echo took`], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } }).stdout).toBe('took\n');
    }
  });

  it('a rollback for a reboot (--action boot) makes the generation the boot default only, deletes the rejected one and points the GC root back; bad arguments change nothing', () => {
    for (const shell of ['dash', 'bash']) {
      const root = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-rollback-boot-'));
      const [stateDir, profiles, tools, proc, run] = ['run-pideploy', 'profiles', 'tools', 'proc', 'run'].map((name) => path.join(root, name)) as [string, string, string, string, string];
      for (const directory of [stateDir, profiles, tools, run, path.join(proc, 'self')]) mkdirSync(directory, { recursive: true });
      writeFileSync(path.join(proc, 'self', 'status'), 'Name:\tsh\nUid:\t0\t0\t0\t0\n');
      // Each system's switch-to-configuration logs its action (boot must not touch what runs).
      for (const generation of [1, 2, 3]) {
        const system = path.join(root, `system-${generation}`);
        mkdirSync(path.join(system, 'bin'), { recursive: true });
        writeFileSync(path.join(system, 'bin', 'switch-to-configuration'), `#!/bin/sh\necho "${generation} $1" >>${root}/stc.log\n`);
        chmodSync(path.join(system, 'bin', 'switch-to-configuration'), 0o755);
        execFileSync('ln', ['-s', system, path.join(profiles, `system-${generation}-link`)]);
      }
      execFileSync('ln', ['-s', 'system-3-link', path.join(profiles, 'system')]);
      for (const bundle of ['bundle-old', 'bundle-new']) mkdirSync(path.join(root, bundle));
      execFileSync('ln', ['-s', path.join(root, 'bundle-new'), path.join(run, 'current-configuration')]);
      // nix-env -p PROFILE --switch-generation N | --delete-generations N, and nix-store --add-root ROOT --indirect -r TARGET, as the real ones do to the links.
      writeFileSync(
        path.join(tools, 'nix-env'),
        [
          '#!/bin/sh',
          'echo "nix-env $*" >>' + `${root}/tools.log`,
          'case $3 in',
          '  --switch-generation) [ -e "${2%/*}/system-$4-link" ] || { echo "error: generation $4 does not exist" >&2; exit 1; }; ln -sfn "system-$4-link" "$2" ;;',
          '  --delete-generations) rm "${2%/*}/system-$4-link" ;;',
          'esac',
          '',
        ].join('\n'),
      );
      writeFileSync(path.join(tools, 'nix-store'), `#!/bin/sh\necho "nix-store $*" >>${root}/tools.log\nln -sfn "$5" "$2"\n`);
      for (const tool of ['nix-env', 'nix-store']) chmodSync(path.join(tools, tool), 0o755);
      const rollBack = (args: string) =>
        spawnSync(
          shell,
          ['-c', `${definitions}\nstate_dir=${stateDir}; proc_dir=${proc}; profile=${profiles}/system; profiles_dir=${profiles}; gc_root=${run}/current-configuration; bundles_dir=${root}/bundles; PATH=${tools}:/usr/bin:/bin\ncmd_rollback ${args}`],
          // (stdin not a socket: bash would read ~/.bashrc then)
          { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' }, stdio: ['ignore', 'pipe', 'pipe'] },
        );
      const log = (name: string) => (existsSync(path.join(root, name)) ? readFileSync(path.join(root, name), 'utf8') : '');

      // Nonsense is refused before anything is touched.
      for (const [args, error] of [
        ['--to 1 --action test', 'activate: rollback --action is switch or boot, not test'],
        ['--to 1 --delete-generation three', 'activate: --delete-generation takes a generation number, not three'],
        ['--to 1 --gc-root relative/path', 'activate: --gc-root takes a store path, not relative/path'],
        [`--to 1 --gc-root ${root}/missing`, `activate: --gc-root: ${root}/missing is not on this host`],
      ] as const) {
        expect([rollBack(args).status, rollBack(args).stderr]).toEqual([1, `${error}\n`]);
      }
      expect([log('tools.log'), log('stc.log'), readdirSync(stateDir)]).toEqual(['', '', []]);

      const rolled = rollBack(`--to 2 --action boot --delete-generation 3 --gc-root ${root}/bundle-old`);
      expect([rolled.status, rolled.stderr, withoutPrintedState(rolled.stdout)]).toEqual([0, '', `activate: now on generation 2 (${root}/system-2)`]);
      // The boot default only: generation 2's switch-to-configuration boot, nothing switched.
      expect(log('stc.log')).toBe('2 boot\n');
      expect(readlinkSync(path.join(profiles, 'system'))).toBe('system-2-link');
      expect(readdirSync(profiles).sort()).toEqual(['system', 'system-1-link', 'system-2-link']);
      expect(readlinkSync(path.join(run, 'current-configuration'))).toBe(`${root}/bundle-old`);
      expect(stateFromDecisionOutput(rolled.stdout)).toMatchObject({ state: 'succeeded', action: 'boot', toplevel: `${root}/system-2`, bundle: `${root}/bundle-old`, previousGeneration: 3, newGeneration: 2 });
      expect(stateFromDecisionOutput(rolled.stdout)?.message).toMatch(new RegExp(`^rolled back by hand to generation 2 \\(boot default; running .* until a reboot\\); ${run}/current-configuration -> ${root}/bundle-old$`, 'u'));

      // The generation now current is never deleted, and a failed delete is said but not fatal.
      const again = rollBack('--to 2 --action boot --delete-generation 2');
      expect([again.status, again.stderr]).toEqual([0, '']);
      expect(readdirSync(profiles)).toContain('system-2-link');
      const missing = rollBack('--to 1 --action boot --delete-generation 7');
      expect([missing.status, missing.stderr]).toEqual([0, 'rm: cannot remove \'' + `${profiles}/system-7-link': No such file or directory\nactivate: could not delete generation 7\n`]);
      expect(readlinkSync(path.join(profiles, 'system'))).toBe('system-1-link');

      // Each deployment notes which bundle deployed its system (notes whose bundle was collected are dropped) …
      const bundles = path.join(root, 'bundles');
      for (const generation of [1, 2]) {
        mkdirSync(path.join(root, `bundle-${generation}`));
        execFileSync('ln', ['-s', path.join(root, `system-${generation}`), path.join(root, `bundle-${generation}`, 'toplevel')]);
      }
      mkdirSync(bundles, { recursive: true });
      writeFileSync(path.join(bundles, 'system-9'), `${root}/collected-bundle\n`);
      const deployed = spawnSync(
        shell,
        ['-c', `${definitions}\ngc_root=${run}/current-configuration; bundles_dir=${bundles}; PATH=${tools}:/usr/bin:/bin\nfor g in 1 2; do st_toplevel=${root}/system-$g; st_bundle=${root}/bundle-$g; move_gc_root || exit 1; done`],
        { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' }, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      expect([deployed.status, deployed.stderr]).toEqual([0, '']);
      expect(readdirSync(bundles).sort()).toEqual(['system-1', 'system-2']);
      expect(readFileSync(path.join(bundles, 'system-1'), 'utf8')).toBe(`${root}/bundle-1\n`);
      expect(readlinkSync(path.join(run, 'current-configuration'))).toBe(`${root}/bundle-2`);
      // … and a rollback to that system points the GC root back at that bundle.
      const toBundle = rollBack('--to 1');
      expect([toBundle.status, toBundle.stderr]).toEqual([0, '']);
      expect(readlinkSync(path.join(run, 'current-configuration'))).toBe(`${root}/bundle-1`);
      expect(stateFromDecisionOutput(toBundle.stdout)).toMatchObject({
        bundle: `${root}/bundle-1`,
        message: `rolled back by hand to generation 1; ${run}/current-configuration -> ${root}/bundle-1`,
      });
      // A note naming a bundle of another system is not believed: the root names the system itself.
      writeFileSync(path.join(bundles, 'system-2'), `${root}/bundle-1\n`);
      const toSystem = rollBack('--to 2');
      expect([toSystem.status, toSystem.stderr]).toEqual([0, '']);
      expect(readlinkSync(path.join(run, 'current-configuration'))).toBe(`${root}/system-2`);
      expect(stateFromDecisionOutput(toSystem.stdout)).toMatchObject({ bundle: '', message: `rolled back by hand to generation 2; ${run}/current-configuration -> ${root}/system-2 (no bundle of it on this host)` });
    }
  });

  it('run_switch stops a switch-to-configuration that outlives --activation-timeout (TERM) and says so; a quicker one keeps its exit status; 0 is no limit', () => {
    for (const shell of ['dash', 'bash']) {
      const root = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-run-switch-'));
      mkdirSync(path.join(root, 'system', 'bin'), { recursive: true });
      // Sleeps $SECONDS_TO_TAKE, then exits 3; logs its action and that it ended.
      writeFileSync(path.join(root, 'system', 'bin', 'switch-to-configuration'), `#!/bin/sh\necho "$1" >>${root}/stc.log\nsleep "$SECONDS_TO_TAKE"\necho ended >>${root}/stc.log\nexit 3\n`);
      chmodSync(path.join(root, 'system', 'bin', 'switch-to-configuration'), 0o755);
      const runSwitch = (activationTimeout: number, secondsToTake: number) => {
        const started = performance.now();
        const run = spawnSync(
          shell,
          ['-c', `${definitions}\nstate_dir=${root}; st_id=d${activationTimeout}-${secondsToTake}; switch_system=${root}/system; st_action=switch; install_bootloader=''; activation_timeout=${activationTimeout}\nrun_switch; echo "status=$? timed_out=$switch_timed_out"`],
          { encoding: 'utf8', env: { PATH: '/usr/bin:/bin', SECONDS_TO_TAKE: String(secondsToTake) }, stdio: ['ignore', 'pipe', 'pipe'] },
        );
        return { stdout: run.stdout, seconds: (performance.now() - started) / 1000 };
      };
      const stopped = runSwitch(1, 30);
      expect(stopped.stdout).toBe('status=143 timed_out=1\n');
      expect(stopped.seconds).toBeLessThan(5);
      expect(readFileSync(path.join(root, 'stc.log'), 'utf8')).toBe('switch\n');
      const quick = runSwitch(20, 0);
      expect(quick.stdout).toBe('status=3 timed_out=0\n');
      // The timer went with it: the run did not wait for its 20 s.
      expect(quick.seconds).toBeLessThan(5);
      expect(runSwitch(0, 1).stdout).toBe('status=3 timed_out=0\n');
      expect(readFileSync(path.join(root, 'stc.log'), 'utf8')).toBe('switch\nswitch\nended\nswitch\nended\n');
    }
  });

  it('read_generation sets the system profile\'s generation number with one readlink ("" without a profile)', () => {
    const profiles = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-profiles-'));
    const profile = path.join(profiles, 'system');
    expect(probe(`profile=${profile}; read_generation; printf '[%s]' "$generation"`)).toBe('[]');
    execFileSync('ln', ['-s', 'system-17-link', profile]);
    expect(probe(`profile=${profile}; read_generation; printf '[%s]' "$generation"`)).toBe('[17]');
  });

  it('save_state uses a clock reading the caller just made once, then reads the clock again', () => {
    const stateDir = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-state-'));
    const read = () => parseActivationState(execFileSync('cat', [path.join(stateDir, 'd2.state')], { encoding: 'utf8' })).updated;
    probe(`state_dir=${stateDir}; st_id=d2; st_state=starting; st_action=test; st_updated=12345; save_state >/dev/null`);
    expect(read()).toBe(12345);
    const before = Math.floor(Date.now() / 1000);
    probe(`state_dir=${stateDir}; st_id=d2; st_state=starting; st_action=test; st_updated=12345; save_state >/dev/null; save_state >/dev/null`);
    // The shell's clock (boot time + uptime under dash) is within 2 s of the real one.
    expect(read()).toBeGreaterThanOrEqual(before - 2);
  });
});

describe('the worker launcher choice (activate launcher)', () => {
  // The systemd-run launch itself needs systemd as init, which neither these tests nor the lab
  // have: only the choice is tested here. The lab hosts (no systemd) use setsid.
  const launcher = (systemdRuntimeDirectory: string, pathPrefix: string) =>
    execFileSync('sh', ['-c', renderActivationScript({ systemdRuntimeDirectory }), 'activate', 'launcher'], {
      encoding: 'utf8',
      env: { PATH: `${pathPrefix}:/usr/bin:/bin` },
    }).trim();
  const scratch = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-launcher-'));
  const tools = path.join(scratch, 'bin');
  const systemdDir = path.join(scratch, 'run-systemd-system');
  execFileSync('mkdir', ['-p', tools, systemdDir]);
  // Never run: only `command -v systemd-run` must find it.
  writeFileSync(path.join(tools, 'systemd-run'), '#!/bin/sh\nexit 99\n');
  chmodSync(path.join(tools, 'systemd-run'), 0o755);

  it('is systemd-run when systemd runs (its runtime directory exists) and systemd-run is on the PATH', () => {
    expect(launcher(systemdDir, tools)).toBe('systemd-run');
  });

  it('is setsid without a running systemd, even where systemd-run is installed', () => {
    expect(launcher(path.join(scratch, 'absent'), tools)).toBe('setsid');
  });
});

describe('scriptCommand', () => {
  it('runs the script with the host\'s /bin/sh, whatever interpreter its first line names', () => {
    const scratch = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-script-command-'));
    // A bundle's first line names the target's shell, which may not run on the machine at hand
    // (an aarch64 store path on this x86_64 test machine): /bin/sh runs it all the same.
    const script = path.join(scratch, 'activate');
    writeFileSync(script, renderActivationScript({ shebang: '#!/nix/store/00000000000000000000000000000000-no-such-shell/bin/sh', systemdRuntimeDirectory: path.join(scratch, 'absent') }));
    const [shell, ...args] = scriptCommand(script, ['launcher']);
    expect(shell).toBe('/bin/sh');
    expect(args).toEqual([script, 'launcher']);
    expect(execFileSync(shell as string, args, { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } }).trim()).toBe('setsid');
    expect(spawnSync(script, ['launcher'], { encoding: 'utf8' }).error).toBeDefined();
  });
});

describe('activateArguments', () => {
  it('builds the contract arguments', () => {
    expect(activateArguments({ action: 'switch', toplevel: '/nix/store/x-sys', bundle: '/nix/store/y-b', deployId: 'a1', rollback: true, confirmTimeoutSeconds: 12, noWait: true })).toEqual([
      'switch', '--toplevel', '/nix/store/x-sys', '--deploy-id', 'a1', '--bundle', '/nix/store/y-b', '--confirm-timeout', '12', '--no-wait',
    ]);
    expect(activateArguments({ action: 'boot', toplevel: '/nix/store/x-sys', deployId: 'a1', rollback: false, installBootloader: true, activationTimeoutSeconds: 600 })).toEqual([
      'boot', '--toplevel', '/nix/store/x-sys', '--deploy-id', 'a1', '--no-rollback', '--install-bootloader', '--activation-timeout', '600',
    ]);
    // 0: no limit, which is what the script does without the flag.
    expect(activateArguments({ action: 'boot', toplevel: '/nix/store/x-sys', deployId: 'a1', rollback: false, activationTimeoutSeconds: 0 })).toEqual(['boot', '--toplevel', '/nix/store/x-sys', '--deploy-id', 'a1', '--no-rollback']);
    expect(() => activateArguments({ action: 'boot', toplevel: '/nix/store/x-sys', deployId: 'a1', rollback: false, activationTimeoutSeconds: 1.5 })).toThrow(TypeError);
    expect(activateArguments({ action: 'test', toplevel: '/nix/store/x-sys', deployId: 'a1', rollback: true, waitStateSeconds: 10 })).toEqual([
      'test', '--toplevel', '/nix/store/x-sys', '--deploy-id', 'a1', '--confirm-timeout', '30', '--wait-state', '10',
    ]);
    expect(() => activateArguments({ action: 'test', toplevel: '/nix/store/x-sys', deployId: 'a1', rollback: true, waitStateSeconds: 1.5 })).toThrow(/not a number of seconds/u);
  });

  it('passes a specialisation as one argument; refuses a name that is no directory name', () => {
    expect(activateArguments({ action: 'test', toplevel: '/nix/store/x-sys', specialisation: 'kiosk mode', deployId: 'a1', rollback: false })).toEqual([
      'test', '--toplevel', '/nix/store/x-sys', '--deploy-id', 'a1', '--specialisation', 'kiosk mode', '--no-rollback',
    ]);
    for (const name of ['', '.', '..', 'a/b', 'a\nb']) {
      expect(() => activateArguments({ action: 'switch', toplevel: '/nix/store/x', specialisation: name, deployId: 'a1', rollback: true })).toThrow(TypeError);
    }
  });

  it('rejects ids that could escape the state directory or a unit name', () => {
    for (const id of ['', '../x', '-x', 'a b', 'a;b', 'x'.repeat(65)]) {
      expect(() => activateArguments({ action: 'test', toplevel: '/nix/store/x', deployId: id, rollback: true })).toThrow(TypeError);
    }
  });
});

describe('newDeployId / parseActivationState', () => {
  it('makes valid ids', () => {
    const id = newDeployId(new Date('2025-01-02T03:04:05.678Z'), () => 0.5);
    expect(id).toBe('20250102T030405Z-800000');
    expect(DEPLOY_ID_PATTERN.test(id)).toBe(true);
  });

  it('reads a state file', () => {
    const state = parseActivationState(
      'id=x\nstate=failed-rolled-back\naction=switch\ntoplevel=/nix/store/a\nbundle=\nprevious_generation=4\nprevious_system=/nix/store/b\nnew_generation=5\nrolled_back_to=4\nexit_code=2\nmessage=a=b; rolled back\nupdated=17\ndeadline=\n',
    );
    expect(state).toMatchObject({ state: 'failed-rolled-back', previousGeneration: 4, newGeneration: 5, rolledBackTo: 4, exitCode: 2, message: 'a=b; rolled back', deadline: undefined });
    expect(isFinalActivationState(state.state)).toBe(true);
    // A file without the field (an older script's) is the system itself.
    expect(state.specialisation).toBe('');
    expect(parseActivationState('id=y\nstate=confirmed\naction=test\ntoplevel=/nix/store/a\nspecialisation=kiosk mode\n').specialisation).toBe('kiosk mode');
    expect(() => parseActivationState('state=weird\naction=switch\n')).toThrow();
  });
});

describe('canRollBack', () => {
  it('needs the system that ran, or (switch/boot) a profile generation', () => {
    const running = '/nix/store/r-nixos-system';
    expect(canRollBack({ action: 'switch', previousSystem: running, hadProfileGeneration: false })).toBe(true);
    expect(canRollBack({ action: 'test', previousSystem: running, hadProfileGeneration: false })).toBe(true);
    expect(canRollBack({ action: 'switch', previousSystem: undefined, hadProfileGeneration: true })).toBe(true);
    expect(canRollBack({ action: 'boot', previousSystem: '', hadProfileGeneration: true })).toBe(true);
    expect(canRollBack({ action: 'test', previousSystem: '', hadProfileGeneration: true })).toBe(false);
    expect(canRollBack({ action: 'switch', previousSystem: '', hadProfileGeneration: false })).toBe(false);
    expect(canRollBack({ action: 'dry-activate', previousSystem: undefined, hadProfileGeneration: false })).toBe(true);
    const fresh = parseActivationState('id=x\nstate=failed\naction=switch\ntoplevel=/nix/store/a\nprevious_generation=\nprevious_system=\n');
    expect(stateCanRollBack(fresh)).toBe(false);
    expect(stateCanRollBack({ ...fresh, previousSystem: running })).toBe(true);
  });
});

import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { createBaseContext, shellJoin, shellQuote } from '@pideploy/core';
import { LAB_SUDO_PASSWORD, labDown, labExec, labUp, type LabHostStatus, type LabStatus } from '@pideploy/lab';
import { connectSsh } from '@pideploy/ssh';
import { expect, it } from 'vitest';
import type { KeySpec } from '../src/key-spec.js';
import type { LoadedKey } from '../src/read-keys.js';
import { uploadKeys } from '../src/upload-keys.js';

/*
 * pideploy's key upload against OpenSSH doing the same job the way colmena uploads keys (one
 * `ssh … sudo sh -c 'cat > tmp; chown; chmod; mv'` per key, the content on stdin; here with the
 * sudo password first on stdin, as the lab host asks for one), on the same lab host in the same
 * run: (a) 10 small keys, (b) the same 10 again (pideploy leaves them alone; the peer writes them
 * again). Wall time (medians of RUNS), SSH logins and password checks per upload.
 */

const instance = Number(process.env['PIDEPLOY_LAB_INSTANCE'] ?? '0');
const RUNS = Number(process.env['PIDEPLOY_BENCH_RUNS'] ?? '3');
const KEYS = 10;
const DIR = '/etc/bench-keys';

/** Runs a program with input on stdin; rejects on a non-zero exit. */
function runWithInput(argv: readonly string[], input: Buffer, env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0] as string, argv.slice(1), { env, stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${argv.join(' ')} exited ${code}: ${stderr}`))));
    child.stdin.end(input);
  });
}

const median = (values: readonly number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;

it('key upload vs one ssh per key (colmena)', async () => {
  const lab: LabStatus = await labUp({ instance, hosts: 1 });
  const host = lab.hosts[0] as LabHostStatus;
  const env = { ...process.env, ...lab.env };
  const keys: LoadedKey[] = Array.from({ length: KEYS }, (_, index) => {
    const spec: KeySpec = { name: `key-${index}`, source: { file: '/unused' }, destDir: DIR, user: 'nobody', group: 'nogroup', permissions: '0640', uploadAt: 'pre-activation' };
    return { spec, content: randomBytes(64) };
  });
  const logins = () => (readFileSync(host.sshdLog, 'utf8').match(/Accepted publickey/gu) ?? []).length;
  // (The log appears with the host's first password check.)
  const checks = () => (existsSync(host.sudoPasswordChecks) ? readFileSync(host.sudoPasswordChecks, 'utf8').split('\n').filter(Boolean).length : 0);
  const tools = {
    pideploy: async () => {
      const context = createBaseContext();
      await using session = await connectSsh(host.name, { sshConfigFile: lab.sshConfig, agent: false }, context);
      // As deploy does: the upload itself proves the password (no separate sudo -v).
      await session.sudo({ password: LAB_SUDO_PASSWORD, proveWith: async (runner) => void (await uploadKeys({ host: host.name, sudo: runner, keys }, context)) });
    },
    'ssh per key (colmena)': async () => {
      for (const key of keys) {
        const destination = `${DIR}/${key.spec.name}`;
        const script = `mkdir -p ${shellQuote(DIR)} && umask 077 && cat > ${shellQuote(`${destination}.tmp`)} && chown nobody:nogroup ${shellQuote(`${destination}.tmp`)} && chmod 0640 ${shellQuote(`${destination}.tmp`)} && mv ${shellQuote(`${destination}.tmp`)} ${shellQuote(destination)}`;
        const remote = shellJoin(['sudo', '-k', '-S', '-p', '', 'sh', '-c', script]);
        await runWithInput(['ssh', '-F', lab.sshConfig, host.name, remote], Buffer.concat([Buffer.from(`${LAB_SUDO_PASSWORD}\n`), Buffer.from(key.content)]), env);
      }
    },
  } as const;
  const rows: Record<string, unknown>[] = [];
  for (const scenario of ['(a) 10 small keys, none on the host', '(b) the same 10 keys again'] as const) {
    const samples: Record<string, { seconds: number; logins: number; checks: number }[]> = {};
    for (let round = 0; round < RUNS; round += 1) {
      for (const [tool, upload] of Object.entries(tools)) {
        // (a) starts from nothing; (b) from the keys in place (the previous tool's, byte for byte).
        if (scenario.startsWith('(a)')) await labExec(host.name, ['rm', '-rf', DIR], { instance });
        else await tools.pideploy();
        const [logins0, checks0] = [logins(), checks()];
        const started = performance.now();
        await upload();
        const seconds = (performance.now() - started) / 1000;
        await new Promise((resolve) => setTimeout(resolve, 200));
        (samples[tool] ??= []).push({ seconds, logins: logins() - logins0, checks: checks() - checks0 });
        // Both left the same thing: the last key's owner and mode, the first one's bytes.
        const check = await labExec(host.name, ['sh', '-c', `stat -c '%a %U' ${DIR}/key-${KEYS - 1} && sha256sum < ${DIR}/key-0`], { instance });
        expect(check.stdout.split('\n').slice(0, 2).map((line) => line.split(' ')[0])).toEqual(['640', createHash('sha256').update(keys[0]?.content ?? []).digest('hex')]);
      }
    }
    const ours = samples['pideploy'] ?? [];
    const peer = samples['ssh per key (colmena)'] ?? [];
    rows.push({
      scenario,
      'pideploy s': median(ours.map((sample) => sample.seconds)).toFixed(3),
      'ssh per key s': median(peer.map((sample) => sample.seconds)).toFixed(3),
      ratio: (median(ours.map((sample) => sample.seconds)) / median(peer.map((sample) => sample.seconds))).toFixed(2),
      'logins (pideploy / ssh)': `${Math.max(...ours.map((sample) => sample.logins))} / ${Math.max(...peer.map((sample) => sample.logins))}`,
      'password checks (pideploy / ssh)': `${Math.max(...ours.map((sample) => sample.checks))} / ${Math.max(...peer.map((sample) => sample.checks))}`,
    });
  }
  console.table(rows);
  writeFileSync(new URL('./results.json', import.meta.url), `${JSON.stringify({ version: 1, runs: RUNS, keys: KEYS, date: new Date().toISOString(), rows }, null, 2)}\n`);
  if (instance !== 0 || process.env['CI'] !== undefined) await labDown({ instance });
});

import { BUILD_MODES, doctor, parseRemoteBuilder, type BuildMode, type DoctorReport } from '@pideploy/build';
import { PideployError } from '@pideploy/core';
import type { CommandInvocation, CommandResult } from '../command.js';

const MARK: Record<string, string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL', skip: 'skip' };

/** The doctor report as a table, with the fixes under each problem. */
export function formatDoctorReport(report: DoctorReport): string {
  const width = Math.max(...report.checks.map((check) => check.title.length), 10);
  const lines = [`checks for building ${report.system} (${report.mode}):`];
  for (const check of report.checks) {
    lines.push(`  ${MARK[check.status] ?? check.status}  ${check.title.padEnd(width)}  ${check.detail}`);
    if (check.fix !== undefined && (check.status === 'fail' || check.status === 'warn')) {
      if (check.fix.nixos !== undefined) lines.push(`        fix on NixOS:         ${check.fix.nixos}`);
      if (check.fix.debian !== undefined) lines.push(`        fix on Debian/Ubuntu: ${check.fix.debian}`);
      if (check.fix.other !== undefined) lines.push(`        ${check.fix.other}`);
    }
  }
  lines.push(report.ok ? 'this machine can build for the Pi' : 'a required check failed: fix it before `pideploy build`');
  return lines.join('\n');
}

/** `pideploy doctor [--system S] [--mode M] [--builders SPEC]`: exit 1 when a required check fails. */
export async function doctorCommand(invocation: CommandInvocation): Promise<CommandResult> {
  const modeFlag = invocation.flags['mode'];
  if (typeof modeFlag === 'string' && !(BUILD_MODES as readonly string[]).includes(modeFlag)) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `unknown build mode "${modeFlag}"`, hint: `use one of: ${BUILD_MODES.join(', ')}` });
  }
  const buildersFlag = invocation.flags['builders'];
  const report = await doctor(
    {
      system: typeof invocation.flags['system'] === 'string' ? invocation.flags['system'] : undefined,
      mode: typeof modeFlag === 'string' ? (modeFlag as BuildMode) : undefined,
      builders: typeof buildersFlag === 'string' ? buildersFlag.split(';').filter((part) => part.trim() !== '').map(parseRemoteBuilder) : undefined,
    },
    invocation.context,
  );
  return { value: report, text: formatDoctorReport(report), exitCode: report.ok ? 0 : 1 };
}

/*
 * Test support: writes tar archives byte by byte, including malformed and hostile ones
 * (`..`, absolute paths, duplicate names, hard links anywhere, devices, wrong sizes), so the
 * same archive can be fed to hashTarballNar and to the real `nix-prefetch-url --unpack`.
 */

/** One member to write. */
export interface CraftedMember {
  /** Member path (string → UTF-8). */
  readonly name: string | Buffer;
  /** Type: a name or a raw type flag character (default `file`). */
  readonly type?: 'file' | 'dir' | 'symlink' | 'hardlink' | 'chr' | 'blk' | 'fifo' | (string & {});
  /** Contents (regular files). */
  readonly data?: string | Buffer;
  /** Mode bits (default 0644 for files, 0755 for directories). */
  readonly mode?: number;
  /** Link target (symlinks, hard links). */
  readonly linkname?: string | Buffer;
  /** Declared size when it must differ from the data length. */
  readonly declaredSize?: number;
}

/** Header formats: GNU (long names as `L`/`K` members), pax (`x` records), ustar (prefix split). */
export type CraftedFormat = 'gnu' | 'pax' | 'ustar';

const TYPE_FLAGS: Record<string, string> = { file: '0', dir: '5', symlink: '2', hardlink: '1', chr: '3', blk: '4', fifo: '6' };

function bytes(value: string | Buffer | undefined): Buffer {
  return value === undefined ? Buffer.alloc(0) : typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
}

function octal(value: number, width: number): Buffer {
  return Buffer.from(`${value.toString(8).padStart(width - 1, '0')}\0`, 'latin1');
}

function header(fields: { name: Buffer; mode: number; size: number; typeFlag: string; linkname: Buffer; prefix?: Buffer; format: CraftedFormat }): Buffer {
  const block = Buffer.alloc(512);
  fields.name.copy(block, 0, 0, Math.min(100, fields.name.length));
  octal(fields.mode, 8).copy(block, 100);
  octal(0, 8).copy(block, 108);
  octal(0, 8).copy(block, 116);
  if (fields.size > 0o77777777777) {
    // base-256
    block[124] = 0x80;
    let value = BigInt(fields.size);
    for (let i = 135; i > 124; i--) {
      block[i] = Number(value & 0xffn);
      value >>= 8n;
    }
  } else {
    octal(fields.size, 12).copy(block, 124);
  }
  octal(1_000_000_000, 12).copy(block, 136);
  block.write(fields.typeFlag, 156, 'latin1');
  fields.linkname.copy(block, 157, 0, Math.min(100, fields.linkname.length));
  if (fields.format === 'gnu') block.write('ustar  \0', 257, 'latin1');
  else block.write('ustar\u000000', 257, 'latin1');
  block.write('root', 265, 'latin1');
  block.write('root', 297, 'latin1');
  if (fields.prefix !== undefined) fields.prefix.copy(block, 345, 0, Math.min(155, fields.prefix.length));
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  Buffer.from(`${sum.toString(8).padStart(6, '0')}\0 `, 'latin1').copy(block, 148);
  return block;
}

function padded(data: Buffer): Buffer {
  const padding = (512 - (data.length % 512)) % 512;
  return Buffer.concat([data, Buffer.alloc(padding)]);
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  let length = body.length + 1;
  while (String(length).length + body.length !== length) length = String(length).length + body.length;
  return Buffer.concat([Buffer.from(String(length)), body]);
}

/** Options of {@link craftTar}. */
export interface CraftTarOptions {
  readonly format?: CraftedFormat;
  /** How the archive ends: two zero blocks (default), one, or none. */
  readonly end?: 'two-zero-blocks' | 'one-zero-block' | 'none';
}

/** Writes members as a tar archive. */
export function craftTar(members: readonly CraftedMember[], options: CraftTarOptions = {}): Buffer {
  const format = options.format ?? 'gnu';
  const parts: Buffer[] = [];
  for (const member of members) {
    const type = member.type ?? 'file';
    const typeFlag = TYPE_FLAGS[type] ?? type;
    let name = bytes(member.name);
    const linkname = bytes(member.linkname);
    const data = bytes(member.data);
    const mode = member.mode ?? (type === 'dir' ? 0o755 : 0o644);
    let prefix: Buffer | undefined;
    if (name.length > 100 || linkname.length > 100) {
      if (format === 'gnu') {
        if (name.length > 100) {
          const longName = Buffer.concat([name, Buffer.from([0])]);
          parts.push(header({ name: Buffer.from('././@LongLink'), mode: 0o644, size: longName.length, typeFlag: 'L', linkname: Buffer.alloc(0), format }), padded(longName));
        }
        if (linkname.length > 100) {
          const longLink = Buffer.concat([linkname, Buffer.from([0])]);
          parts.push(header({ name: Buffer.from('././@LongLink'), mode: 0o644, size: longLink.length, typeFlag: 'K', linkname: Buffer.alloc(0), format }), padded(longLink));
        }
      } else if (format === 'pax') {
        const records = Buffer.concat([
          ...(name.length > 100 ? [paxRecord('path', name)] : []),
          ...(linkname.length > 100 ? [paxRecord('linkpath', linkname)] : []),
        ]);
        parts.push(header({ name: Buffer.from('PaxHeaders/x'), mode: 0o644, size: records.length, typeFlag: 'x', linkname: Buffer.alloc(0), format }), padded(records));
      } else {
        const slash = name.lastIndexOf(0x2f, name.length - 2);
        if (slash > 0 && slash <= 155 && name.length - slash - 1 <= 100) {
          prefix = name.subarray(0, slash);
          name = name.subarray(slash + 1);
        } else {
          throw new Error(`ustar cannot hold the name ${name.toString()}`);
        }
      }
    }
    const size = member.declaredSize ?? data.length;
    parts.push(header({ name, mode, size, typeFlag, linkname, prefix, format }));
    if (data.length > 0) parts.push(padded(data));
  }
  const end = options.end ?? 'two-zero-blocks';
  if (end !== 'none') parts.push(Buffer.alloc(end === 'one-zero-block' ? 512 : 1024));
  return Buffer.concat(parts);
}

import { generateKeyPairSync, sign } from 'node:crypto';
import { formatHash, parseHash } from '@pideploy/nix';
import { describe, expect, it } from 'vitest';
import { hasValidSignature, narInfoFileName, narInfoFingerprint, parseCachePublicKey, parseNarInfo, publicKeyOfSecretKey } from './narinfo.js';

/*
 * Recorded from Nix 2.8: `nix-store --generate-binary-cache-key pideploy-test-vector-1 …`, then
 * `nix copy --to 'file://…?secret-key=…&compression=xz'` of a path with three dependencies and a
 * self-reference. Only the public half of that throwaway key is kept.
 */
const PUBLIC_KEY = 'pideploy-test-vector-1:6xKZkw+W0vSnyJUlZ6GmaOcnpEOuKjt4xnSxpQ8vVWA=';
const NARINFO = `StorePath: /nix/store/dkvdnxcpss1j7pgvnxf2j2c7ik2pvnqi-narinfo-vector-top
URL: nar/1zyvbnhc7189hj8dq86rr474y32f9aqdrrmxz7i66aqnrxywic10.nar.xz
Compression: xz
FileHash: sha256:1zyvbnhc7189hj8dq86rr474y32f9aqdrrmxz7i66aqnrxywic10
FileSize: 284
NarHash: sha256:1pdvg18kj58i83dvl29rq9jzpp4zawva6p1y647hak0424jfacdy
NarSize: 376
References: dkvdnxcpss1j7pgvnxf2j2c7ik2pvnqi-narinfo-vector-top k9g19m87q8w9jl1ma2ilnrkh8nxc0qcs-narinfo-vector-dep-c pci0ldyky36m4japwm346194p896lgyd-narinfo-vector-dep-b pd3xc6cfch7rk4avvjlz5cyqd4ba9d9d-narinfo-vector-dep-a
Deriver: shvdscb1dz8w6drinaw5z186ly04318h-narinfo-vector-top.drv
Sig: pideploy-test-vector-1:DChPR2qfnq1SwFWT499Uwi1T0yQosssaCDh8rXDRfyZwvrz71mtT7L1zMNz9MXwLXDoQxeaY44r3y/n5B677Bw==
`;

describe('parseNarInfo', () => {
  it('reads every field Nix 2.8 writes, references and deriver as full store paths', () => {
    const info = parseNarInfo(NARINFO);
    expect(info).toEqual({
      storePath: '/nix/store/dkvdnxcpss1j7pgvnxf2j2c7ik2pvnqi-narinfo-vector-top',
      url: 'nar/1zyvbnhc7189hj8dq86rr474y32f9aqdrrmxz7i66aqnrxywic10.nar.xz',
      compression: 'xz',
      fileHash: 'sha256:1zyvbnhc7189hj8dq86rr474y32f9aqdrrmxz7i66aqnrxywic10',
      fileSize: 284,
      narHash: 'sha256:1pdvg18kj58i83dvl29rq9jzpp4zawva6p1y647hak0424jfacdy',
      narSize: 376,
      references: [
        '/nix/store/dkvdnxcpss1j7pgvnxf2j2c7ik2pvnqi-narinfo-vector-top',
        '/nix/store/k9g19m87q8w9jl1ma2ilnrkh8nxc0qcs-narinfo-vector-dep-c',
        '/nix/store/pci0ldyky36m4japwm346194p896lgyd-narinfo-vector-dep-b',
        '/nix/store/pd3xc6cfch7rk4avvjlz5cyqd4ba9d9d-narinfo-vector-dep-a',
      ],
      deriver: '/nix/store/shvdscb1dz8w6drinaw5z186ly04318h-narinfo-vector-top.drv',
      signatures: ['pideploy-test-vector-1:DChPR2qfnq1SwFWT499Uwi1T0yQosssaCDh8rXDRfyZwvrz71mtT7L1zMNz9MXwLXDoQxeaY44r3y/n5B677Bw=='],
      contentAddress: undefined,
    });
  });

  it('reads empty references, a missing compression as bzip2 (Nix’s default), and refuses missing fields', () => {
    const minimal = parseNarInfo('StorePath: /nix/store/kqyl4bynjws948prlp7z67lfh1kmrpql-dep\nURL: nar/x.nar\nNarHash: sha256:00kjynz8n03652qccs76ivsvark3pr3dfr6w1ba3x7bx83kcknvv\nNarSize: 120\nReferences: \n');
    expect(minimal).toMatchObject({ references: [], compression: 'bzip2', fileSize: undefined, deriver: undefined, signatures: [] });
    expect(() => parseNarInfo('StorePath: /nix/store/x\nURL: nar/x.nar\nNarSize: 1\n')).toThrow(expect.objectContaining({ code: 'PIDEPLOY_CACHE_NARINFO_INVALID', message: expect.stringContaining('NarHash') }));
    expect(() => parseNarInfo(NARINFO.replace('NarSize: 376', 'NarSize: lots'))).toThrow(expect.objectContaining({ code: 'PIDEPLOY_CACHE_NARINFO_INVALID' }));
    expect(() => parseNarInfo('<html>not found</html>')).toThrow(expect.objectContaining({ code: 'PIDEPLOY_CACHE_NARINFO_INVALID' }));
  });

  it('names the narinfo file after the hash part', () => {
    expect(narInfoFileName('/nix/store/dkvdnxcpss1j7pgvnxf2j2c7ik2pvnqi-narinfo-vector-top')).toBe('dkvdnxcpss1j7pgvnxf2j2c7ik2pvnqi.narinfo');
    expect(() => narInfoFileName('/nix/store/../etc/passwd')).toThrow(expect.objectContaining({ code: 'PIDEPLOY_STORE_PATH_INVALID' }));
  });
});

describe('signatures', () => {
  it('computes the fingerprint Nix signs (full, sorted references; nix32 hash)', () => {
    const info = parseNarInfo(NARINFO);
    expect(narInfoFingerprint(info)).toBe(
      '1;/nix/store/dkvdnxcpss1j7pgvnxf2j2c7ik2pvnqi-narinfo-vector-top;sha256:1pdvg18kj58i83dvl29rq9jzpp4zawva6p1y647hak0424jfacdy;376;' +
        '/nix/store/dkvdnxcpss1j7pgvnxf2j2c7ik2pvnqi-narinfo-vector-top,/nix/store/k9g19m87q8w9jl1ma2ilnrkh8nxc0qcs-narinfo-vector-dep-c,' +
        '/nix/store/pci0ldyky36m4japwm346194p896lgyd-narinfo-vector-dep-b,/nix/store/pd3xc6cfch7rk4avvjlz5cyqd4ba9d9d-narinfo-vector-dep-a',
    );
    // The same fingerprint whatever the order and encoding the caller has.
    const sri = formatHash(parseHash(info.narHash).digest, 'sri');
    expect(narInfoFingerprint({ ...info, narHash: sri })).toBe(narInfoFingerprint(info));
    expect(narInfoFingerprint({ ...info, references: [...info.references].reverse() })).toBe(narInfoFingerprint(info));
  });

  it('accepts Nix’s own signature with the right key, and nothing else', () => {
    const info = parseNarInfo(NARINFO);
    const key = parseCachePublicKey(PUBLIC_KEY);
    expect(hasValidSignature(info, [key])).toBe(true);
    const otherKey = parseCachePublicKey(`${key.name}:${Buffer.alloc(32, 7).toString('base64')}`);
    expect(hasValidSignature(info, [otherKey])).toBe(false);
    expect(hasValidSignature(info, [{ name: 'another-name', key: key.key }])).toBe(false);
    expect(hasValidSignature({ ...info, narSize: 377 }, [key])).toBe(false);
    expect(hasValidSignature({ ...info, references: info.references.slice(1) }, [key])).toBe(false);
    expect(hasValidSignature({ ...info, signatures: [] }, [key])).toBe(false);
    expect(hasValidSignature({ ...info, signatures: ['pideploy-test-vector-1:bm90IGEgc2lnbmF0dXJl'] }, [key])).toBe(false);
    expect(hasValidSignature({ ...info, signatures: ['garbage', ...info.signatures] }, [otherKey, key])).toBe(true);
  });

  it('derives the public key from a Nix secret key (seed ‖ public key) and verifies what it signs', () => {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const x = Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url');
    const d = Buffer.from(privateKey.export({ format: 'jwk' }).d as string, 'base64url');
    const secretText = `fleet-1:${Buffer.concat([d, x]).toString('base64')}\n`;
    expect(publicKeyOfSecretKey(secretText)).toBe(`fleet-1:${x.toString('base64')}`);
    const info = { ...parseNarInfo(NARINFO), signatures: [] as string[] };
    const signature = sign(null, Buffer.from(narInfoFingerprint(info)), privateKey).toString('base64');
    expect(hasValidSignature({ ...info, signatures: [`fleet-1:${signature}`] }, [parseCachePublicKey(publicKeyOfSecretKey(secretText))])).toBe(true);
  });

  it('refuses malformed keys without echoing a secret', () => {
    expect(() => parseCachePublicKey('no-colon')).toThrow(expect.objectContaining({ code: 'PIDEPLOY_CACHE_KEY_INVALID' }));
    expect(() => parseCachePublicKey('name:c2hvcnQ=')).toThrow(expect.objectContaining({ code: 'PIDEPLOY_CACHE_KEY_INVALID' }));
    expect(() => parseCachePublicKey(`${PUBLIC_KEY} ${PUBLIC_KEY}`)).toThrow(expect.objectContaining({ code: 'PIDEPLOY_CACHE_KEY_INVALID' }));
    expect(parseCachePublicKey(` ${PUBLIC_KEY}\n`).name).toBe('pideploy-test-vector-1');
    const secretLooking = `k:${Buffer.alloc(40, 9).toString('base64')}`;
    try {
      publicKeyOfSecretKey(secretLooking);
      expect.unreachable();
    } catch (error) {
      expect((error as { code: string }).code).toBe('PIDEPLOY_CACHE_KEY_INVALID');
      expect(JSON.stringify(error) + String(error)).not.toContain(secretLooking.slice(2));
    }
  });
});

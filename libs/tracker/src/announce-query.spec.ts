import { describe, expect, it } from 'vitest';
import { decodeBinary, MAX_NUMWANT, parseAnnounce, parseInfoHashes, splitQuery, TrackerQueryError } from './announce-query.js';

const bytes = Buffer.from(Array.from({ length: 20 }, (_, i) => (i * 37) & 255));
// What clients send: unreserved bytes literal, everything else %XX.
const enc = (b: Buffer) =>
  [...b]
    .map((x) => (/[A-Za-z0-9.\-_~]/.test(String.fromCharCode(x)) ? String.fromCharCode(x) : `%${x.toString(16).padStart(2, '0')}`))
    .join('');
const q = (extra: string) => splitQuery(`/announce?info_hash=${enc(bytes)}&peer_id=${enc(bytes)}&port=6881&left=0${extra}`);

describe('announce query', () => {
  it('decodes binary parameters byte for byte', () => {
    expect(decodeBinary(enc(bytes))).toEqual(bytes);
    expect(decodeBinary('%zz')).toBeNull();
    expect(decodeBinary('é')).toBeNull();
  });

  it('parses an announce with defaults and caps', () => {
    const a = parseAnnounce(q('&event=started&token=a%2Fb&numwant=5000&compact=1'));
    expect(a).toMatchObject({
      infoHash: bytes.toString('hex'),
      port: 6881,
      left: 0,
      event: 'started',
      numwant: MAX_NUMWANT,
      compact: true,
      token: 'a/b',
    });
    expect(Buffer.from(a.peerId, 'latin1')).toEqual(bytes);
    expect(parseAnnounce(q(''))).toMatchObject({ event: 'update', numwant: 50, compact: true, token: undefined });
    expect(parseAnnounce(q('&compact=0')).compact).toBe(false);
  });

  it.each([
    ['/announce?peer_id=x&port=1', /info_hash: missing/],
    [`/announce?info_hash=short&peer_id=${enc(bytes)}&port=1`, /info_hash: expected 20 bytes/],
    [`/announce?info_hash=${enc(bytes)}&peer_id=%41&port=1`, /peer_id/],
    [`/announce?info_hash=${enc(bytes)}&peer_id=${enc(bytes)}&port=70000`, /port/],
    [`/announce?info_hash=${enc(bytes)}&peer_id=${enc(bytes)}&port=-1`, /port/],
    [`/announce?info_hash=${enc(bytes)}&peer_id=${enc(bytes)}&port=1&event=bogus`, /event/],
    [`/announce?info_hash=${enc(bytes)}&peer_id=${enc(bytes)}&port=1&left=1e9`, /left/],
  ])('refuses %s', (url, message) => {
    expect(() => parseAnnounce(splitQuery(url))).toThrow(TrackerQueryError);
    expect(() => parseAnnounce(splitQuery(url))).toThrow(message);
  });

  it('reads every info_hash of a scrape', () => {
    const other = Buffer.alloc(20, 7);
    expect(parseInfoHashes(splitQuery(`/scrape?info_hash=${enc(bytes)}&info_hash=${enc(other)}`))).toEqual([
      bytes.toString('hex'),
      other.toString('hex'),
    ]);
    expect(() => parseInfoHashes(splitQuery('/scrape?info_hash=x'))).toThrow(/info_hash/);
  });
});

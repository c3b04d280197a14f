import { describe, expect, it } from 'vitest';
import { expandServiceUrls } from './service-urls.js';

describe(expandServiceUrls.name, () => {
  const resolve = async (host: string) => {
    if (host === 'p2p-tracker.kube-system.svc') return ['10.0.0.2', '10.0.0.1'];
    if (host === 'v6.example') return ['fd00::1'];
    throw new Error('ENOTFOUND');
  };

  it('turns a headless Service name into one URL per address, keeping path and query', async () => {
    expect(await expandServiceUrls(['http://p2p-tracker.kube-system.svc:6969/announce?x=1'], resolve)).toEqual([
      'http://10.0.0.2:6969/announce?x=1',
      'http://10.0.0.1:6969/announce?x=1',
    ]);
  });

  it('keeps IP URLs and unresolvable names as they are, and brackets IPv6', async () => {
    expect(
      await expandServiceUrls(['http://127.0.0.1:6969/announce', 'http://nowhere:1/announce', 'http://v6.example:6969/announce'], resolve),
    ).toEqual(['http://127.0.0.1:6969/announce', 'http://nowhere:1/announce', 'http://[fd00::1]:6969/announce']);
  });
});

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Bitfield } from './bitfield.js';

/** Bytes for `length` pieces with the spare trailing bits cleared, as a well-behaved peer sends them. */
const bitfieldBytes = fc.integer({ min: 0, max: 300 }).chain((length) =>
  fc.uint8Array({ minLength: Math.ceil(length / 8), maxLength: Math.ceil(length / 8) }).map((bytes) => {
    const spare = bytes.length * 8 - length;
    if (spare > 0) bytes[bytes.length - 1] &= 0xff << spare;
    return { length, bytes };
  }),
);

describe(Bitfield.name, () => {
  it('round-trips from/toBuffer and agrees bit by bit (high bit first)', () => {
    fc.assert(
      fc.property(bitfieldBytes, ({ length, bytes }) => {
        const field = Bitfield.from(bytes, length);
        expect(field.length).toBe(length);
        expect(field.toBuffer()).toEqual(Buffer.from(bytes));
        const set: number[] = [];
        for (let i = 0; i < length; i++) {
          const bit = (bytes[i >> 3] & (0x80 >> (i & 7))) !== 0;
          expect(field.get(i)).toBe(bit);
          if (bit) set.push(i);
        }
        expect([...field]).toEqual(set);
        expect(field.count).toBe(set.length);
        expect(field.full()).toBe(set.length === length);
      }),
    );
  });

  it('copies on the way in and out', () => {
    const bytes = new Uint8Array([0xff]);
    const field = Bitfield.from(bytes, 8);
    bytes[0] = 0;
    expect(field.get(0)).toBe(true);
    field.toBuffer().fill(0);
    expect(field.count).toBe(8);
  });

  it('rejects spare trailing bits and wrong byte lengths', () => {
    expect(() => Bitfield.from(new Uint8Array([0b1110_0001]), 3)).toThrow(RangeError);
    expect(() => Bitfield.from(new Uint8Array([0, 0x01]), 15)).toThrow(RangeError);
    expect(() => Bitfield.from(new Uint8Array([0xff, 0x80]), 9).count).not.toThrow();
    expect(() => Bitfield.from(new Uint8Array([0]), 9)).toThrow(RangeError);
    expect(() => Bitfield.from(new Uint8Array([0, 0, 0]), 9)).toThrow(RangeError);
    expect(() => Bitfield.from(new Uint8Array(0), 1)).toThrow(RangeError);
    expect(Bitfield.from(new Uint8Array(0), 0).full()).toBe(true);
  });

  it('maintains count under any sequence of set and clear', () => {
    fc.assert(
      fc.property(
        fc
          .integer({ min: 1, max: 100 })
          .chain((length) =>
            fc.tuple(fc.constant(length), fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: length - 1 })), { maxLength: 300 })),
          ),
        ([length, ops]) => {
          const field = new Bitfield(length);
          const model = new Set<number>();
          for (const [set, i] of ops) {
            if (set) {
              field.set(i);
              model.add(i);
            } else {
              field.clear(i);
              model.delete(i);
            }
            expect(field.count).toBe(model.size);
          }
          expect([...field]).toEqual([...model].sort((a, b) => a - b));
          expect(field.full()).toBe(model.size === length);
          expect(Bitfield.from(field.toBuffer(), length).count).toBe(model.size);
        },
      ),
    );
  });

  it('range-checks indexes', () => {
    const field = new Bitfield(10);
    expect(() => field.set(10)).toThrow(RangeError);
    expect(() => field.clear(-1)).toThrow(RangeError);
    expect(() => field.set(1.5)).toThrow(RangeError);
    expect(field.get(10)).toBe(false);
    expect(field.get(-1)).toBe(false);
    expect(() => new Bitfield(-1)).toThrow(RangeError);
  });
});

import type { Pool } from 'pg';
import { StreamSnapshots } from '../../src/platform/commands/snapshots';
import { evolveInventory, initialInventoryState, inventorySnapshotSpacing } from '../../domain/sales/inventory.decider';

/** When a snapshot is due (no database involved: `due` only counts; load and save are tested with PostgreSQL). */
const unusedPool = {} as Pool;

describe('snapshot spacing', () => {
  it('every N events, or more for a state whose spacing says so', () => {
    const s = new StreamSnapshots<{ size: number }>(unusedPool, {
      version: 1,
      every: 5,
      revive: (json) => json as { size: number },
      spacing: (state) => state.size,
    });
    // No snapshot yet: revision r is r + 1 events past none.
    expect(s.due('a', 3, { size: 0 })).toBe(false);
    expect(s.due('a', 4, { size: 0 })).toBe(true);
    expect(s.due('a', 4, { size: 100 })).toBe(false);
    expect(s.due('a', 98, { size: 100 })).toBe(false);
    expect(s.due('a', 99, { size: 100 })).toBe(true);
  });

  it('without spacing, every N events whatever the state', () => {
    const s = new StreamSnapshots<{ size: number }>(unusedPool, {
      version: 1,
      every: 5,
      revive: (json) => json as { size: number },
    });
    expect(s.due('a', 4, { size: 1_000_000 })).toBe(true);
  });

  it("an inventory's: one event per ten open reservations", () => {
    let state = evolveInventory(initialInventoryState, {
      type: 'sales.StockReceived',
      data: { productId: 'p', quantity: 100, reference: 'r', by: 'admin', at: '2026-12-06T00:00:00.000Z' },
    });
    expect(inventorySnapshotSpacing(state)).toBe(0);
    for (let i = 0; i < 25; i++)
      state = evolveInventory(state, {
        type: 'sales.StockReserved',
        data: { productId: 'p', orderId: `o${i}`, quantity: 1, at: '2026-12-06T00:00:00.000Z' },
      });
    expect(inventorySnapshotSpacing(state)).toBe(3);
  });
});

import { given } from '../shared/given-when-then';
import type { InventoryEvent } from './inventory.events';
import { evolveInventory, initialInventoryState, inventoryDecider, inventoryStateFromJson } from './inventory.decider';

const productId = '11111111-1111-4111-8111-111111111111';
const now = new Date('2026-11-23T10:00:00.000Z');
const at = now.toISOString();
const received = (quantity: number): InventoryEvent => ({
  type: 'sales.StockReceived',
  data: { productId, quantity, reference: 'r', by: 'admin', at },
});
const reserved = (orderId: string, quantity: number): InventoryEvent => ({
  type: 'sales.StockReserved',
  data: { productId, orderId, quantity, at },
});
const reserve = (orderId: string, quantity: number) => ({
  type: 'ReserveStock' as const,
  data: { productId, orderId, quantity, now },
});

describe('inventory decider', () => {
  it('reserves what is available', () => {
    given(inventoryDecider, [received(5)])
      .when(reserve('o1', 5))
      .then([reserved('o1', 5)]);
  });

  it('a reservation that would make available stock negative is rejected as an event, with the numbers', () => {
    given(inventoryDecider, [received(5), reserved('o1', 4)])
      .when(reserve('o2', 2))
      .then([
        { type: 'sales.StockReservationRejected', data: { productId, orderId: 'o2', requested: 2, available: 1, at } },
      ]);
  });

  it('no stock received yet: rejected with 0 available', () => {
    given(inventoryDecider, [])
      .when(reserve('o1', 1))
      .then([
        { type: 'sales.StockReservationRejected', data: { productId, orderId: 'o1', requested: 1, available: 0, at } },
      ]);
  });

  it('the same order reserving again changes nothing (a saga resend after a crash)', () => {
    given(inventoryDecider, [received(5), reserved('o1', 2)])
      .when(reserve('o1', 2))
      .thenNothing();
    given(inventoryDecider, [
      received(1),
      { type: 'sales.StockReservationRejected', data: { productId, orderId: 'o1', requested: 2, available: 1, at } },
    ])
      .when(reserve('o1', 2))
      .thenNothing();
  });

  it("releases an order's reservation once; releasing an unknown or released one changes nothing", () => {
    const release = { type: 'ReleaseStock' as const, data: { productId, orderId: 'o1', now } };
    const released: InventoryEvent = {
      type: 'sales.StockReleased',
      data: { productId, orderId: 'o1', quantity: 2, at },
    };
    given(inventoryDecider, [received(5), reserved('o1', 2)])
      .when(release)
      .then([released]);
    given(inventoryDecider, [received(5), reserved('o1', 2), released])
      .when(release)
      .thenNothing();
    given(inventoryDecider, [received(5)])
      .when(release)
      .thenNothing();
    given(inventoryDecider, [received(5), reserved('o1', 2), released])
      .when(reserve('o2', 5))
      .then([reserved('o2', 5)]);
  });

  it('ships a reservation: reserved → shipped, on hand drops; shipping twice changes nothing', () => {
    const ship = { type: 'ShipStock' as const, data: { productId, orderId: 'o1', now } };
    const shipped: InventoryEvent = { type: 'sales.StockShipped', data: { productId, orderId: 'o1', quantity: 2, at } };
    given(inventoryDecider, [received(5), reserved('o1', 2)])
      .when(ship)
      .thenState((s) => {
        expect(s).toMatchObject({ onHand: 3, reserved: 0, shipped: 2 });
      });
    given(inventoryDecider, [received(5), reserved('o1', 2), shipped])
      .when(ship)
      .thenNothing();
  });

  it('evolving leaves the state before untouched (states share their open reservations, never change them)', () => {
    let state = evolveInventory(initialInventoryState, received(10_000));
    for (let i = 0; i < 1_000; i++) state = evolveInventory(state, reserved(`o${i}`, 1));
    const before = state;
    const after = evolveInventory(evolveInventory(before, reserved('late', 2)), {
      type: 'sales.StockReleased',
      data: { productId, orderId: 'o7', quantity: 1, at },
    });
    expect(before.open.size).toBe(1_000);
    expect(before.open.has('late')).toBe(false);
    expect(before.open.get('o7')).toBe(1);
    expect(before.reserved).toBe(1_000);
    expect(after.open.size).toBe(1_000);
    expect(after.open.get('late')).toBe(2);
    expect(after.open.has('o7')).toBe(false);
    expect(after.reserved).toBe(1_001);
  });

  it('a state read back from its JSON (a snapshot) is the same state', () => {
    let state = evolveInventory(initialInventoryState, received(7));
    state = evolveInventory(evolveInventory(state, reserved('o1', 2)), reserved('o2', 3));
    const json: unknown = JSON.parse(JSON.stringify(state));
    expect(json).toEqual({ onHand: 7, reserved: 5, shipped: 0, open: { o1: 2, o2: 3 } });
    const back = inventoryStateFromJson(json);
    expect(back.open.equals(state.open)).toBe(true);
    expect({ ...back, open: null }).toEqual({ ...state, open: null });
    expect(inventoryDecider.decide(reserve('o2', 3), back)).toEqual([]);
  });
});

import { given } from '../shared/given-when-then';
import type { InventoryEvent } from './inventory.events';
import { inventoryDecider } from './inventory.decider';

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
});

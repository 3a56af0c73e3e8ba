import type { UserEvent } from '../../domain/identity/user.events';
import type { Event } from '../../domain/shared/event';
import type { RecordedEvent } from '../../domain/shared/recorded-event';
import { sqlProjection, type EventHandlers, type Projection } from '../../projections/projection';
import { PostgresEventStore } from '../../src/platform/event-store/postgres-event-store';
import { inTransaction } from '../../src/platform/processing/transaction';
import { testEvent } from '../support/events';
import { readModel } from '../support/read-model';
import { createTestDatabase, type TestDatabase } from '../support/services';

/**
 * Typed events end to end: a reader names its union and gets type and data
 * narrowed together, from the store (the adapter's one cast) to a
 * projection's handlers. The `@ts-expect-error` lines are the compile-time
 * half of this test (`tsc --noEmit` fails if any of them compiles).
 */

type Noted = Event<'test.Noted', { readonly noteId: string; readonly text: string }>;
type Erased = Event<'test.Erased', { readonly noteId: string }>;
type NoteEvent = Noted | Erased;

const noteHandlers: EventHandlers<NoteEvent> = {
  'test.Noted': (e) => ({
    text: 'INSERT INTO notes (note_id, text) VALUES ($1, $2)',
    values: [e.data.noteId, e.data.text],
  }),
  'test.Erased': (e) => ({ text: 'DELETE FROM notes WHERE note_id = $1', values: [e.data.noteId] }),
};

const notesProjection = sqlProjection({
  name: 'typed-notes',
  version: 1,
  tables: ['notes'],
  setup: ['CREATE TABLE notes (note_id text PRIMARY KEY, text text NOT NULL)'],
  handlers: noteHandlers,
});

// Compile-time checks: each line below must be a type error.
export const wrongField: EventHandlers<NoteEvent> = {
  'test.Noted': (e) => ({ text: 'SELECT 1', values: [e.data.noteId] }),
  // @ts-expect-error an Erased event has no text
  'test.Erased': (e) => ({ text: 'SELECT 1', values: [e.data.text] }),
};
// @ts-expect-error every event type of the union needs a handler
export const missing: EventHandlers<NoteEvent> = { 'test.Noted': () => [] };
export const unknownType: EventHandlers<NoteEvent> = {
  'test.Noted': () => [],
  'test.Erased': () => [],
  // @ts-expect-error a type outside the union is not a handler
  'test.Other': () => [],
};

describe('typed events', () => {
  describe('the store', () => {
    let db: TestDatabase;
    let store: PostgresEventStore;
    beforeAll(async () => {
      db = await createTestDatabase('typed');
      store = new PostgresEventStore(db.pool);
    });
    afterAll(async () => {
      await store.close();
      await db.drop();
    });

    it('readStream<E> and readAll<E> narrow data by type', async () => {
      const from = await store.headPosition();
      await store.append(
        'user-typed',
        [
          testEvent('identity.RoleAssigned', { userId: 'u', role: 'admin', by: 'a', at: '2025-01-01T00:00:00.000Z' }),
          testEvent('identity.UserDisabled', { userId: 'u', by: 'a', at: '2025-01-01T00:00:01.000Z' }),
        ],
        'no_stream',
      );
      const seen = (events: readonly RecordedEvent<UserEvent>[]) =>
        events.map((e) => {
          if (e.type === 'identity.RoleAssigned') return `role ${e.data.role}`;
          if (e.type === 'identity.UserDisabled') return `disabled by ${e.data.by}`;
          return e.type;
        });
      expect(seen(await store.readStream<UserEvent>('user-typed'))).toEqual(['role admin', 'disabled by a']);
      expect(seen(await store.readAll<UserEvent>(from, 10, ['identity.UserDisabled']))).toEqual(['disabled by a']);
      // @ts-expect-error the type filter only takes types of the union read
      await store.readAll<UserEvent>(from, 10, ['sales.OrderPlaced']);
      // With no union named, readers get plain records, as before.
      const [plain] = await store.readStream('user-typed');
      expect(plain?.data.role).toBe('admin');
    });

    it('a projection held as a plain Projection still applies only the types it has handlers for', async () => {
      await db.pool.query('CREATE TABLE notes (note_id text PRIMARY KEY, text text NOT NULL)');
      const erased: Projection = notesProjection;
      expect(erased.eventTypes).toEqual(['test.Noted', 'test.Erased']);
      const from = await store.headPosition();
      await store.append(
        'notes-1',
        [testEvent('test.Noted', { noteId: 'n1', text: 'hello' }), testEvent('test.Unrelated', { noteId: 'n1' })],
        'no_stream',
      );
      const events = await store.readAll(from, 10);
      expect(events.map((e) => e.type)).toEqual(['test.Noted', 'test.Unrelated']);
      await inTransaction(db.pool, (tx) => erased.apply(events, tx));
      expect((await db.pool.query('SELECT note_id, text FROM notes')).rows).toEqual([{ note_id: 'n1', text: 'hello' }]);
    });
  });

  describe('a projection of a test union', () => {
    const notes = readModel(notesProjection);

    it('given notes and an erasure, then the rows left', async () => {
      await notes
        .given(
          { type: 'test.Noted', data: { noteId: 'a', text: 'first' } },
          { type: 'test.Noted', data: { noteId: 'b', text: 'second' } },
          { type: 'test.Erased', data: { noteId: 'a' } },
        )
        .thenRows('notes', [{ note_id: 'b', text: 'second' }]);
    });

    it('given events that break a constraint, then the failure the runtime would park on', async () => {
      await notes
        .given(
          { type: 'test.Noted', data: { noteId: 'a', text: 'first' } },
          { type: 'test.Noted', data: { noteId: 'a', text: 'again' } },
        )
        .thenFails(/duplicate key/);
    });
  });
});

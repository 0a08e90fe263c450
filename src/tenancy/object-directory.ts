/**
 * What several instances share about objects before the store has it: the owner of every object
 * created on any instance, its deletions, and the objects created a moment ago (for lists). The
 * registry consults it when it is given one (several instances); on one instance there is none and
 * nothing here runs. The implementation over Redis is cluster/object-directory.ts.
 *
 * Every method answers "could not ask" (false, undefined) instead of throwing: the registry then
 * falls back to the store, and makes its own writes durable there (a flush) before the client
 * learns of them.
 */
import type { ObjectKind } from './object-kinds.js';

/** The part of an object record that never changes after its creation. */
export interface SharedObject {
  readonly id: string;
  readonly kind: ObjectKind;
  readonly accountId: number;
  readonly keyId: number;
  readonly keyGroup: string | null;
  readonly createdAt: number;
  readonly tag: string | null;
}

export interface DirectoryEntry {
  /** The object, when the directory still holds it (it expires once the store surely has it). */
  readonly object: SharedObject | undefined;
  /** When it was deleted, on whichever instance, if the directory knows. */
  readonly deletedAt: number | undefined;
}

export interface RecentObjects {
  /** Objects of the account and kind created within the directory's recent window. */
  readonly objects: readonly SharedObject[];
  /** Which of `objects` were deleted since. */
  readonly deleted: ReadonlySet<string>;
}

export interface ObjectDirectory {
  /** Publishes a created object. False when it could not (Redis unreachable). */
  publish(object: SharedObject): Promise<boolean>;
  /** Publishes a deletion, seen by every instance from now on. False when it could not. */
  publishDeleted(id: string, deletedAt: number): Promise<boolean>;
  /**
   * Puts an object read from the store back (not in the recent index), so that the next lookups
   * of an old object do not read the store again. Best effort.
   */
  refresh(object: SharedObject, deletedAt: number | null): Promise<void>;
  /** What the directory knows of `id`; undefined when it could not be asked. */
  lookup(id: string): Promise<DirectoryEntry | undefined>;
  /**
   * Objects of one account and kind created on any instance within the recent window (those the
   * store may not have yet); undefined when it could not be asked.
   */
  recent(accountId: number, kind: ObjectKind): Promise<RecentObjects | undefined>;
}

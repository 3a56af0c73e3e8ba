import { Injectable } from '@nestjs/common';
import type { Command as BusCommand } from '@nestjs/cqrs';
import type { ZodType } from 'zod';
import { DomainError } from '../../../domain/shared/errors';
import type { CommandContext, CommandResult } from './command-context';
import { PlatformErrorCode } from '../platform-errors';

/** The authenticated caller of a command sent through the generic route. */
export interface Caller {
  readonly kind: 'user' | 'device';
  readonly id: string;
  readonly roles: readonly string[];
}

/**
 * The commands reachable through `POST /commands/:name`. Each bounded context
 * registers its commands at start-up: a name, the body schema (the same one
 * its resource route uses), and how to build the CommandBus message.
 */
export interface CommandDefinition<Input = unknown> {
  readonly name: string;
  readonly schema: ZodType<Input>;
  /** Who may send it through the generic route. */
  readonly access: 'public' | 'authenticated' | 'admin';
  create(input: Input, ctx: CommandContext, caller?: Caller): BusCommand<CommandResult>;
}

@Injectable()
export class CommandRegistry {
  private readonly byName = new Map<string, CommandDefinition<never>>();

  register<I>(def: CommandDefinition<I>): void {
    if (this.byName.has(def.name)) throw new Error(`command ${def.name} registered twice`);
    this.byName.set(def.name, def as unknown as CommandDefinition<never>);
  }

  get(name: string): CommandDefinition<unknown> {
    const def = this.byName.get(name);
    if (!def) {
      throw new DomainError('not_found', PlatformErrorCode.UNKNOWN_COMMAND, `no command named ${name}`, [], { known: this.names() });
    }
    return def as unknown as CommandDefinition<unknown>;
  }

  names(): string[] {
    return [...this.byName.keys()].sort();
  }
}

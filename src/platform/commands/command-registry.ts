import { Injectable, type OnModuleInit, type Type } from '@nestjs/common';
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

/** Declares a command definition with its input type inferred from the schema. */
export const defineCommand = <Input>(definition: CommandDefinition<Input>): CommandDefinition<Input> => definition;

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
      throw new DomainError('not_found', PlatformErrorCode.UNKNOWN_COMMAND, `no command named ${name}`, [], {
        known: this.names(),
      });
    }
    return def as unknown as CommandDefinition<unknown>;
  }

  names(): string[] {
    return [...this.byName.keys()].sort();
  }

  /** Every registered command, by name (for the API document). */
  definitions(): CommandDefinition<unknown>[] {
    return this.names().map((n) => this.get(n));
  }
}

/**
 * A provider that registers a context's command definitions when its module
 * starts. Each use-case file exports its definition next to its handler; the
 * module lists them once: `providers: [...handlers, registersCommands(a, b)]`.
 */
export function registersCommands(...definitions: readonly CommandDefinition<unknown>[]): Type<OnModuleInit> {
  @Injectable()
  class CommandRegistration implements OnModuleInit {
    constructor(private readonly registry: CommandRegistry) {}
    onModuleInit(): void {
      for (const d of definitions) this.registry.register(d);
    }
  }
  return CommandRegistration;
}

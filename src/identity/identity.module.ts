import { Global, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { AuthGuard } from './auth-guard';
import { AuthController, DevicesController, IdentityCommands, UsersController, identityCommandHandlers } from './identity.http';
import { IdentityServices } from './identity.services';

/** Identity: users, roles, sessions, devices; and the global guard every route passes. */
@Global()
@Module({
  controllers: [AuthController, UsersController, DevicesController],
  providers: [IdentityServices, IdentityCommands, ...identityCommandHandlers, { provide: APP_GUARD, useClass: AuthGuard }],
  exports: [IdentityServices],
})
export class IdentityModule {}

import { Global, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { registersCommands } from '../platform/commands/command-registry';
import { AdminBootstrap } from './admin-bootstrap';
import { AssignRoleHandler, assignRoleCommand } from './assign-role';
import { Authenticator } from '../platform/http/access';
import { AccessGuard } from './auth-guard';
import { DisableUserHandler, disableUserCommand } from './disable-user';
import { AuthController, DevicesController, UsersController } from './identity.http';
import { IdentityServices } from './identity.services';
import { RegisterDeviceHandler, registerDeviceCommand } from './register-device';
import { RegisterUserHandler, registerUserCommand } from './register-user';
import { RevokeDeviceHandler, revokeDeviceCommand } from './revoke-device';
import { RevokeRoleHandler, revokeRoleCommand } from './revoke-role';

/**
 * Identity: users, roles, sessions, devices; and the global guard every route passes.
 * One file per write use case: its input schema, command, handler and POST /commands/:name entry.
 */
@Global()
@Module({
  controllers: [AuthController, UsersController, DevicesController],
  providers: [
    IdentityServices,
    AdminBootstrap,
    { provide: APP_GUARD, useClass: AccessGuard },
    // The platform's port for routes that authenticate a caller themselves (POST /commands/:name).
    { provide: Authenticator, useExisting: IdentityServices },
    RegisterUserHandler,
    AssignRoleHandler,
    RevokeRoleHandler,
    DisableUserHandler,
    RegisterDeviceHandler,
    RevokeDeviceHandler,
    registersCommands(
      registerUserCommand,
      assignRoleCommand,
      revokeRoleCommand,
      disableUserCommand,
      registerDeviceCommand,
      revokeDeviceCommand,
    ),
  ],
  exports: [IdentityServices, Authenticator],
})
export class IdentityModule {}

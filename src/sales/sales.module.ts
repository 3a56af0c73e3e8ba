import { Module } from '@nestjs/common';
import { registersCommands } from '../platform/commands/command-registry';
import { CancelOrderHandler, cancelOrderCommand } from './cancel-order';
import { ChangeProductHandler, changeProductCommand } from './change-product';
import { PlaceOrderHandler, placeOrderCommand } from './place-order';
import { ReceiveStockHandler, receiveStockCommand } from './receive-stock';
import { RegisterProductHandler, registerProductCommand } from './register-product';
import { OrdersController, ProductsController, SalesAdminController } from './sales.http';
import { SalesRuntime } from './sales.runtime';
import { SalesServices } from './sales.services';

/**
 * Sales: catalogue, stock, orders, payments, and the saga that fulfils or compensates each order.
 * One file per write use case: its input schema, command, handler and POST /commands/:name entry.
 */
@Module({
  controllers: [ProductsController, OrdersController, SalesAdminController],
  providers: [
    SalesServices,
    SalesRuntime,
    RegisterProductHandler,
    ChangeProductHandler,
    ReceiveStockHandler,
    PlaceOrderHandler,
    CancelOrderHandler,
    registersCommands(
      registerProductCommand,
      changeProductCommand,
      receiveStockCommand,
      placeOrderCommand,
      cancelOrderCommand,
    ),
  ],
})
export class SalesModule {}

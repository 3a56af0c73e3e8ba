import { Module } from '@nestjs/common';
import { OrdersController, ProductsController, SalesAdminController, SalesCommands, salesCommandHandlers } from './sales.http';
import { SalesRuntime } from './sales.runtime';
import { SalesServices } from './sales.services';

/** Sales: catalogue, stock, orders, payments, and the saga that fulfils or compensates each order. */
@Module({
  controllers: [ProductsController, OrdersController, SalesAdminController],
  providers: [SalesServices, SalesRuntime, SalesCommands, ...salesCommandHandlers],
})
export class SalesModule {}

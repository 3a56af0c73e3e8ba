import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The Prometheus registry of one app instance (GET /metrics). */
export class Metrics {
  readonly registry = new Registry();
  readonly eventsAppended = new Counter({
    name: 'es_events_appended_total',
    help: 'Events appended to the event store',
    registers: [this.registry],
  });
  readonly appends = new Counter({
    name: 'es_appends_total',
    help: 'Append operations that stored events',
    registers: [this.registry],
  });
  readonly projectionLagEvents = new Gauge({
    name: 'projection_lag_events',
    help: 'Events a projection has not applied yet',
    labelNames: ['projection'],
    registers: [this.registry],
  });
  readonly projectionLagSeconds = new Gauge({
    name: 'projection_lag_seconds',
    help: 'Age of the oldest event a projection has not applied',
    labelNames: ['projection'],
    registers: [this.registry],
  });
  readonly projectionParked = new Gauge({
    name: 'projection_parked',
    help: '1 when the projection is parked on a failing event',
    labelNames: ['projection'],
    registers: [this.registry],
  });
  readonly projectionCheckpoint = new Gauge({
    name: 'projection_checkpoint_position',
    help: 'Global position a projection has reached',
    labelNames: ['projection'],
    registers: [this.registry],
  });
  readonly httpConnectionsRefused = new Counter({
    name: 'http_connections_refused_total',
    help: 'HTTP connections closed on arrival: HTTP_MAX_CONNECTIONS (max) or HTTP_MAX_CONNECTIONS_PER_ADDRESS (per_address) reached',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request latency',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}

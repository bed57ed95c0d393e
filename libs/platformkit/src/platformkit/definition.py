"""What a service is, declared once: `ServiceDefinition`.

Each service's `bootstrap.py` builds one `DEFINITION`; `platformkit.service.run` serves it
and `platformkit.http.build_service_app` turns it into a litestar app whose lifespan runs a
`platformkit.runtime.ServiceRuntime` for it. Everything a service runs is declared here:

- `route_handlers` (litestar) and `dependencies` (extra `Provide`s);
- `migrations`: the package holding its numbered `.sql` files;
- `subscriptions` (per-event, with the inbox) and `batch_subscriptions` (one handler call
  per batch): `platformkit.consumers`;
- `jobs`: periodic jobs and long-running loops, `platformkit.jobs.Job`;
- `on_startup` / `on_shutdown`: hooks `(app) -> None | Awaitable` for resources the routes
  or jobs share through `app.state` (a payment provider, an HTTP client). Start-up hooks run
  after the runtime is built and before it starts its consumers and jobs; shutdown hooks
  run after the runtime has stopped them (so a job never sees a closed resource);
- `retention`: how long the kit's inbox rows, idempotency keys and sent outbox rows are
  kept (`platformkit.retention.Retention`; the defaults suit most services);
- `relay` / `kafka`: turn the outbox relay or every Kafka part off (the gateway, the node
  agent, tests);
- `required_settings`: the GPUCLOUD_* variables a production install must give it beyond
  the kit's own (`platformkit.settings.production_requirements` adds those: the database,
  the Kafka principal). In production (GPUCLOUD_ENVIRONMENT=production) the service refuses
  to start without any of them, and `just deploy-check` fails a Helm chart that does not
  give every pod the whole list.
"""

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from litestar.di import Provide

from platformkit.consumers import BatchSubscription, Subscription
from platformkit.jobs import Job
from platformkit.retention import Retention

Hook = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True)
class ServiceDefinition:
    name: str
    version: str
    description: str
    route_handlers: Sequence[Any]
    migrations: str | None = None
    subscriptions: Sequence[Subscription] = ()
    batch_subscriptions: Sequence[BatchSubscription] = ()
    jobs: Sequence[Job] = ()
    dependencies: Mapping[str, Provide] = dataclasses.field(default_factory=dict)
    retention: Retention = dataclasses.field(default_factory=Retention)
    relay: bool = True
    kafka: bool = True
    required_settings: Sequence[str] = ()
    on_startup: Sequence[Hook] = ()
    on_shutdown: Sequence[Hook] = ()

    @property
    def consumed_topics(self) -> set[str]:
        """Every topic a subscription of this service reads (lint checks them against the
        service's AsyncAPI document)."""
        return {t for s in (*self.subscriptions, *self.batch_subscriptions) for t in s.topics}

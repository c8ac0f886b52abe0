"""Drives a live Herald through a client that openapi-python-client generated from its
/openapi.json: what a platform team's own SDK would do. Run by tests/it/openapi.rs.

Arguments: the client's package directory (on sys.path), Herald's base URL, the admin token,
the receiver's URL. Every step asserts on the typed models the generator made, so a field
the document misdescribes fails here.
"""

import json
import sys
import time

sys.path.insert(0, sys.argv[1])
base, token, receiver = sys.argv[2], sys.argv[3], sys.argv[4]

from herald_client import AuthenticatedClient  # noqa: E402
from herald_client.api.deliveries import get_delivery, list_deliveries, retry_delivery  # noqa: E402
from herald_client.api.destinations import create_destination  # noqa: E402
from herald_client.api.events import publish_event, publish_events  # noqa: E402
from herald_client.api.inbound import create_callback_endpoint, wait_for_callback  # noqa: E402
from herald_client.api.tenants import upsert_tenant  # noqa: E402
from herald_client.models import (  # noqa: E402
    CreateCallbackEndpoint,
    CreateDestination,
    DeliveryStatus,
    DestinationKind,
    Problem,
    Scheme,
    PublishBatch,
    PublishRequest,
    TenantBody,
    VerificationRequest,
    WaitStatus,
)

client = AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True)


def check(response, status):
    assert response.status_code == status, (response.status_code, response.content)
    assert not isinstance(response.parsed, Problem), response.parsed
    return response.parsed


# A tenant and a destination.
check(upsert_tenant.sync_detailed("sdk", client=client, body=TenantBody()), 201)
created = check(
    create_destination.sync_detailed(
        "sdk",
        client=client,
        body=CreateDestination(type_=DestinationKind.WEBHOOK, url=receiver, topics=["job.*"]),
    ),
    201,
)
assert created.secret.startswith("whsec_"), created.secret
destination_id = created.id

# One event and a batch; `data` may be any JSON, an array included.
one = check(
    publish_event.sync_detailed(
        client=client,
        body=PublishRequest(tenant_id="sdk", topic="job.done", data={"n": 1}),
    ),
    202,
)
assert one.id.startswith("evt_") and one.deliveries == 1, one
batch = check(
    publish_events.sync_detailed(
        client=client,
        body=PublishBatch(
            events=[
                PublishRequest(tenant_id="sdk", topic="job.done", data=[1, 2, 3]),
                PublishRequest(tenant_id="sdk", topic="job.done", data="text"),
            ]
        ),
    ),
    202,
)
assert len(batch.events) == 2, batch

# Every delivery succeeds (the worker runs in the background); the status filter works.
deadline = time.monotonic() + 30
while True:
    page = check(
        list_deliveries.sync_detailed(
            "sdk", client=client, status=DeliveryStatus.SUCCEEDED, limit=10
        ),
        200,
    )
    if len(page.data) == 3:
        break
    assert time.monotonic() < deadline, [d.status for d in page.data]
    time.sleep(0.05)
assert all(d.status == DeliveryStatus.SUCCEEDED for d in page.data)
assert all(d.destination_id == destination_id for d in page.data)
failed = check(
    list_deliveries.sync_detailed("sdk", client=client, status=DeliveryStatus.FAILED), 200
)
assert failed.data == [], failed

# One delivery with its attempts, and a manual retry of it.
delivery = check(get_delivery.sync_detailed(page.data[0].id, client=client), 200)
assert delivery.attempts and delivery.attempts[0].status_code == 200, delivery
retried = check(retry_delivery.sync_detailed(delivery.id, client=client), 202)
assert retried.id == delivery.id

# A callback endpoint, a callback sent to it, and a wait that returns it.
endpoint = check(
    create_callback_endpoint.sync_detailed(
        client=client,
        body=CreateCallbackEndpoint(
            label="sdk", verification=VerificationRequest(scheme=Scheme.NONE)
        ),
    ),
    201,
)
sent = client.get_httpx_client().post(
    endpoint.url,
    content=json.dumps([{"z": 1, "a": 2}]),
    headers={"content-type": "application/json"},
)
assert sent.status_code == 200, sent.text
waited = check(
    wait_for_callback.sync_detailed(
        endpoint.id, client=client, after=0, timeout_ms=5000
    ),
    200,
)
assert waited.status == WaitStatus.RECEIVED, waited
# An array body arrives as the array, its objects' keys in the sender's order.
assert waited.callback.body == [{"z": 1, "a": 2}], waited.callback.body
assert list(waited.callback.body[0]) == ["z", "a"]
assert waited.cursor == 1
print("python client: ok")

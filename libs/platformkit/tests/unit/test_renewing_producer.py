"""RenewingProducer's second failure mode, as pure logic over a stand-in producer: aiokafka's
sender stays alive but fails every batch with a fatal answer (OutOfOrderSequenceNumber after
a Kafka restart, 36 relay attempts in a row in CI's chaos run). One such failed delivery
marks the producer broken; the next send runs on a fresh one. A retriable failure does not.
(The sender-task-died mode runs against real Kafka: tests/integration/test_outbox.py.)"""

import asyncio

from aiokafka.errors import KafkaTimeoutError, OutOfOrderSequenceNumber

from platformkit.kafka import RenewingProducer


class _Stub:
    made = 0

    def __init__(self, error: BaseException | None) -> None:
        _Stub.made += 1
        self.error, self.started, self.stopped = error, False, False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic, value=None, key=None, **_):
        delivery = asyncio.get_running_loop().create_future()
        if self.error is None:
            delivery.set_result(("ok", topic))
        else:
            delivery.set_exception(self.error)
        return delivery


async def _deliver(producer: RenewingProducer) -> BaseException | None:
    delivery = await producer.send("t", b"x")
    try:
        await delivery
    except Exception as exc:
        return exc
    await asyncio.sleep(0)
    return None


async def test_a_fatal_delivery_failure_renews_the_producer():
    errors = iter([OutOfOrderSequenceNumber(), None])
    stubs: list[_Stub] = []

    def factory():
        stubs.append(_Stub(next(errors, None)))
        return stubs[-1]

    producer = RenewingProducer(factory)
    await producer.start()
    failed = await _deliver(producer)
    await asyncio.sleep(0)  # the done callback runs
    assert isinstance(failed, OutOfOrderSequenceNumber) and producer.broken
    assert await _deliver(producer) is None
    assert producer.renewals == 1 and stubs[0].stopped and stubs[1].started
    assert not producer.broken


async def test_a_retriable_failure_keeps_the_producer():
    producer = RenewingProducer(lambda: _Stub(KafkaTimeoutError()))
    await producer.start()
    assert isinstance(await _deliver(producer), KafkaTimeoutError)
    await asyncio.sleep(0)
    assert not producer.broken and producer.renewals == 0

import pytest
from twisted.internet import task

from distregistry.storage.driver import factory
from distregistry.storage.driver.inmemory import InMemoryDriver
from driver_suite import DriverSuite


@pytest.fixture
def driver_factory():
    return InMemoryDriver


class TestInMemoryDriver(DriverSuite):
    pass


async def test_factory_builds_inmemory():
    driver = factory.create("inmemory", None)
    assert isinstance(driver, InMemoryDriver)
    await driver.put_content("/a", b"x")
    assert await driver.get_content("/a") == b"x"
    await driver.close()


def test_factory_unknown_driver():
    with pytest.raises(ValueError, match="unknown storage driver 'nosuch'"):
        factory.create("nosuch", {})


async def test_modtime_follows_the_reactor_clock():
    clock = task.Clock()
    clock.advance(1000)
    driver = InMemoryDriver(reactor=clock)
    await driver.put_content("/d/f", b"x")
    assert (await driver.stat("/d/f")).modtime == 1000
    clock.advance(50)
    w = await driver.writer("/d/f", append=True)
    await w.write(b"y")
    await w.commit()
    assert (await driver.stat("/d/f")).modtime == 1050
    clock.advance(5)
    await driver.put_content("/d/g", b"x")
    assert (await driver.stat("/d")).modtime == 1055


async def test_cancel_leaves_a_newer_file_at_the_path_alone():
    driver = InMemoryDriver()
    w = await driver.writer("/p")
    await w.write(b"abandoned")
    await driver.put_content("/p", b"newer")
    await w.cancel()
    assert await driver.get_content("/p") == b"newer"

import pytest

import ferrosio

app = ferrosio.AsyncServer()


@app.event
async def add(sid, a, b):
    return a + b


@pytest.fixture
def sio():
    return app


async def test_add(sio_inprocess_client):
    assert await sio_inprocess_client.call("add", (1, 2)) == 3

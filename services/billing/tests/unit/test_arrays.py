"""Array literals sent to PostgreSQL: every value comes back as itself."""

import uuid

from hypothesis import given
from hypothesis import strategies as st

from billing.store.arrays import array_literal


@given(st.lists(st.uuids() | st.none(), min_size=1).filter(lambda v: v[0] is not None))
def test_uuid_arrays_render_each_uuid_or_null(values):
    literal = array_literal(values)
    assert literal[0] == "{" and literal[-1] == "}"
    back = [None if e == "NULL" else uuid.UUID(e) for e in literal[1:-1].split(",")]
    assert back == values


def test_uuid_array_with_a_string_element_is_quoted():
    u = uuid.uuid4()
    assert array_literal([u, str(u)]) == "{" + u.hex + ',"' + str(u) + '"}'

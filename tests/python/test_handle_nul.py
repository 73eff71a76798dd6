"""A handle string with a NUL byte inside is refused: C would see only the
part before the NUL and attach that array, while Python kept the whole
string (and pickled it again)."""
import pickle

import pytest

import shoal
from shoal import array as _array


class _Reduced:
    """Unpickles as shoal's own handle path does, with any string."""

    def __init__(self, handle):
        self.handle = handle

    def __reduce__(self):
        return (_array._attach_handle, (self.handle, False))


@pytest.mark.parametrize("tail", ["\0", "\0junk", "\0@0000000000000001"])
def test_attach_refuses_a_nul(name, tail):
    with shoal.Array.zeros(4, name=name) as a:
        with pytest.raises(ValueError, match="NUL"):
            shoal.Array.attach(a.handle + tail)
        with pytest.raises(ValueError, match="NUL"):
            shoal.Array.attach(a.handle[:5] + "\0" + a.handle[5:])
        assert a.refcount == 1      # nothing was attached


def test_unpickle_refuses_a_nul(name):
    with shoal.Array.zeros(4, name=name) as a:
        data = pickle.dumps(_Reduced(a.handle + "\0x"))
        with pytest.raises(ValueError, match="NUL"):
            pickle.loads(data)
        assert a.refcount == 1
        b = pickle.loads(pickle.dumps(_Reduced(a.handle)))   # the rule, not the path
        assert b.refcount == 2
        b.release()

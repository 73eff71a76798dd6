# bench/python-env.sh - the environment a bench part that runs Python runs
# in, sourced by each such bench/<part>.sh after it sets $here (its own
# directory): the build (SHOAL_BUILDDIR, default ../_build/release), its
# libshoal (SHOAL_LIBRARY), this tree's bindings first on PYTHONPATH, and
# the interpreter (PYTHON, default Debian's /usr/bin/python3, which has
# numpy). bench/run sets the first and the last; a part run alone after a
# build gets the defaults.
: "${SHOAL_BUILDDIR:=$here/../_build/release}"
: "${PYTHON:=/usr/bin/python3}"
: "${SHOAL_LIBRARY:=$SHOAL_BUILDDIR/lib/.libs/libshoal.so}"
PYTHONPATH="$here/../bindings/python${PYTHONPATH:+:$PYTHONPATH}"
export SHOAL_BUILDDIR SHOAL_LIBRARY PYTHONPATH PYTHON

"""The call model: what a call is, how its lookup key is formed, and templates.

A :class:`Call` holds values; a :class:`DigestedCall` holds the digests of
those values and is what call storages keep; a :class:`LazyCall` loads the
values of a digested call on access; a :class:`PreparedCall` is a call whose
arguments are stored and whose key is sealed before its body runs; a
:class:`QueryCall` is a template matched against stored calls.

The lookup key of a call is the digest of its function identity (name,
module, version, code digest) and its arguments by name.  The identity part
is hashed once per function (:func:`function_prefix`) and the arguments are
streamed into one hasher after it (:func:`lookup_key`).

This module gathers the names users import from it; each job lives in its
own module: keys in :mod:`fleche.call_key`, records in
:mod:`fleche.call_record`, templates in :mod:`fleche.call_template`, the
views a cache hands out in :mod:`fleche.prepared`, what a function brings
in :mod:`fleche.profile`.
"""

from __future__ import annotations

from .call_key import (
    KEY_SCHEME,
    OPTIONAL_IDENTITY,
    argument_digests,
    function_prefix,
    key_of,
    lookup_key,
)
from .call_record import UNSTORED, Call, DigestedCall, LazyCall, unstored_arguments
from .call_template import (
    AnyCall,
    AnyQueryType,
    Exactly,
    QueryCall,
    StrQueryType,
    metadata_matches,
)
from .prepared import LazyArguments, PreparedCall
from .profile import FunctionProfile, Ignored, Required, Unstored, bind, marked

__all__ = [
    "AnyCall",
    "AnyQueryType",
    "Call",
    "DigestedCall",
    "Exactly",
    "FunctionProfile",
    "Ignored",
    "KEY_SCHEME",
    "LazyArguments",
    "LazyCall",
    "OPTIONAL_IDENTITY",
    "PreparedCall",
    "QueryCall",
    "Required",
    "StrQueryType",
    "UNSTORED",
    "Unstored",
    "argument_digests",
    "bind",
    "function_prefix",
    "key_of",
    "lookup_key",
    "marked",
    "metadata_matches",
    "unstored_arguments",
]

"""The one error type for user mistakes: bad config or bad input files; the type check of settings that the
job kinds' range checks share; and `build`, where a library's ValueError about its own parameter becomes the one-line
error that names the setting.

Library code (a solver, a model, an estimator) raises ValueError or TypeError naming its own parameter
("latent_dim must be at least 1"); it knows nothing of the config. The pipeline's boundary knows where the
parameter came from and says so: "model.latent_dim must be at least 1".
"""

from __future__ import annotations

import contextlib
import importlib
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class UserError(Exception):
    """A mistake the user can fix; the message names the setting or file and what to do.

    `python -m experiments` prints it as one line and exits non-zero (HYDRA_FULL_ERROR=1 shows the
    traceback). Internal bugs are any other exception and keep their traceback.
    """


def one_line(error: BaseException, name_target: bool = False) -> str:
    """An error's message on one line, whatever the library wrote; unwrapped from Hydra's InstantiationException
    (which wraps what a constructor raised in "Error in call to target ..."). With `name_target`, a
    constructor's own error (not a UserError, which names its setting) keeps the name of the class being built
    and its type ("ConvAutoencoder: TypeError: ..."): the command line's last word on it."""
    target = None
    while type(error).__name__ == "InstantiationException" and error.__cause__ is not None:
        found = re.search(r"target '([\w.]+)'", str(error))
        target = found.group(1) if found else target
        error = error.__cause__
    message = " ".join(str(error).split())
    if name_target and target is not None and not isinstance(error, UserError):
        message = f"{target.rsplit('.', 1)[-1]}: {type(error).__name__}: {message}"
    return message


def build(path: str, node: Mapping[str, Any], **kwargs: Any) -> Any:
    """`hydra.utils.instantiate(node, **kwargs)` for the config at `path` (model, data, reducer, ...): its settings
    checked against the constructor's type hints first (`check_against_hints`), and a ValueError or TypeError the
    constructor raises turned into a UserError naming the setting (`in_setting`)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    target = target_class(path, node)
    if isinstance(target, type):
        check_against_hints(node, path, target)
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, (ValueError, TypeError)) and not isinstance(cause, UserError):
            raise in_setting(path, cause, node, getattr(target, "__name__", None)) from cause
        raise


def target_class(path: str, node: Mapping[str, Any]) -> Any:
    """The class (or function) `node._target_` names, imported as Hydra imports it (the longest importable module
    of the dotted path, then its attributes); a target that does not import is one line naming `PATH._target_`.
    None for a node without a target."""
    name = node.get("_target_")
    if not isinstance(name, str):
        return None
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:end]))
            break
        except ModuleNotFoundError as e:
            if end == 1 or not (e.name and ".".join(parts[:end]).startswith(e.name)):
                raise UserError(f"{path}._target_={name}: cannot import it ({e}); check the dotted path, and that "
                                "its package is installed or on PYTHONPATH") from None
    for attribute in parts[end:]:
        if not hasattr(found, attribute):
            raise UserError(f"{path}._target_={name}: {'.'.join(parts[:end])} has no {attribute}") from None
        found = getattr(found, attribute)
    return found


def in_setting(path: str, error: BaseException, settings: Mapping[str, Any], owner: str | None = None) -> UserError:
    """A library's complaint about one of its parameters, as a UserError naming the setting: a message that starts
    with the name of one of `settings` ("latent_dim must be ...") becomes "PATH.latent_dim must be ..."; any other
    "PATH (OWNER): message"."""
    if isinstance(error, UserError):
        return error
    message = one_line(error)
    first = re.match(r"[A-Za-z_]\w*", message)
    if first is not None and first.group(0) in settings:
        return UserError(f"{path}.{message}")
    return UserError(f"{path}{f' ({owner})' if owner else ''}: {message}")


def check_types(settings: Mapping[str, Any], prefix: str, whole: Iterable[str] = (), real: Iterable[str] = (),
                flags: Iterable[str] = (), whole_lists: Iterable[str] = ()) -> None:
    """A word where a number or a flag goes (`task.lam=abc`, `plots.enabled=yes`) as one line naming the setting,
    before the range checks that would fail on it with a TypeError, or a library that would take it as given and
    fail mid-run. A setting that is absent or null is left to those checks. `prefix`: the settings' place in the
    config ("" at its top)."""
    for keys, fits, kind in ((whole, _is_whole, "a whole number"), (real, _is_real, "a number"),
                             (flags, _is_flag, "true or false"),
                             (whole_lists, _is_whole_list, "a list of whole numbers, e.g. [500,500]")):
        for key in keys:
            value = settings.get(key)
            if value is not None and not fits(value):
                raise UserError(f"{prefix + '.' if prefix else ''}{key}={value!r}: use {kind}")


def check_against_hints(settings: Mapping[str, Any], prefix: str, cls: type) -> None:
    """`check_types` for the settings of a class's constructor, read from its type hints (and its bases'): int,
    float, bool, their optional forms and tuples or lists of ints. `model.latent_dim=abc` is then one line naming
    the setting, for any model or data module, a user's own too, instead of the constructor's TypeError. Settings
    without such a hint are left to the constructor."""
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if "__init__" in vars(klass):
            with contextlib.suppress(NameError, TypeError):  # a hint it cannot evaluate: nothing to check against
                hints |= typing.get_type_hints(klass.__init__)
    kinds: dict[str, list[str]] = {"whole": [], "real": [], "flags": [], "whole_lists": []}
    for key in settings:
        kind = _kind_of_hint(hints.get(key))
        if kind is not None:
            kinds[kind].append(key)
    check_types(settings, prefix, **kinds)


def _kind_of_hint(hint: Any) -> str | None:
    """What `check_types` checks for a type hint, or None for one it leaves alone."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:  # X | None
        others = [h for h in typing.get_args(hint) if h is not type(None)]
        return _kind_of_hint(others[0]) if len(others) == 1 else None
    if typing.get_origin(hint) in (tuple, list) and set(typing.get_args(hint)) <= {int, Ellipsis}:
        return "whole_lists" if typing.get_args(hint) else None
    return {int: "whole", float: "real", bool: "flags"}.get(hint)


def _is_flag(value: Any) -> bool:
    return isinstance(value, bool)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is an int to Python


def _is_real(value: Any) -> bool:
    return _is_whole(value) or isinstance(value, float)


def _is_whole_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str) and all(_is_whole(v) for v in value)

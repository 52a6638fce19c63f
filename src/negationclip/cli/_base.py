"""What every command module shares: the help formatter and the parser factory."""

from __future__ import annotations

import argparse


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults, except where the help already says what the default is, or it is None."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if "default" in text.lower() or d is None or d is False or d == [] or d == argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


class UsageError(Exception):
    """A command-line usage error (unknown option, bad value); ``main`` prints it, exit 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``error: ...`` line (like every other failure) that
    ``main`` turns into exit code 2 instead of a SystemExit from deep inside parsing."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def add_act_option(p, flag: str = "--act", what: str = "the CLIP checkpoint") -> None:
    """The one ``--act`` option of every command that loads a CLIP (see ``models.load_clip``)."""
    p.add_argument(flag, choices=["quick_gelu", "gelu"], default=None,
                   help=f"MLP activation of {what}: OpenAI's CLIPs and NegationCLIP use quick_gelu, "
                        "LAION open_clip models gelu. Default: read from the checkpoint "
                        "(config.json, open_clip_config.json, a -quickgelu name); a bare state "
                        "dict is assumed quick_gelu, with a note")


def _parser(sub, name: str, help: str, description: str, epilog: str = ""):
    return sub.add_parser(name, help=help, description=description, epilog=epilog,
                          formatter_class=_Formatter)

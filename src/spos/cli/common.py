"""Arguments shared by several commands."""

from __future__ import annotations

import argparse

from ..runtime import parse_amount
from ..space import LAYOUTS, SearchSpace


class HelpFormatter(argparse.HelpFormatter):
    """Every flag's help ends with its default unless the text already states one (a flag whose
    default is None says what None means itself); choices show as {a,b,c}; a description or
    epilog with line breaks (the examples) is printed as written, one without is wrapped."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip():
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _format_action(self, action: argparse.Action) -> str:
        if action.help is None and self._shows_default(action):
            action.help = "default: %(default)s"  # argparse prints no line for help=None
        return super()._format_action(action)

    @staticmethod
    def _shows_default(action: argparse.Action) -> bool:
        d = action.default  # 0 is a default worth showing; None, False (a switch) and [] are not
        return (bool(action.option_strings) and not action.required and d is not None and d is not False
                and d != [] and d != argparse.SUPPRESS)  # fmt: skip

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or not self._shows_default(action):
            return text
        return f"{text} (default: %(default)s)"


class SposParser(argparse.ArgumentParser):
    """An ArgumentParser with :class:`HelpFormatter` for itself and every subcommand, and
    one-line usage errors."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        """A usage error in one line, like every other spos error (exit 2), not a usage block."""
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def add_space_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("search space (ignored for zoo names, which carry their own)")
    g.add_argument("--layout", choices=list(LAYOUTS), default="oneshot", help="stage channel layout")
    g.add_argument("--width", type=float, default=1.0, help="multiplier on the layout's channels")
    g.add_argument("--use-se", action="store_true", help="hard-swish + SE in later stages (SPEC §1)")
    g.add_argument("--last-conv-after-pooling", action="store_true", help="MobileNetV3-style head")
    g.add_argument("--input-size", type=int, default=224, help="input resolution (multiple of 32)")
    g.add_argument("--input-channels", type=int, default=3, help="image channels")
    g.add_argument("--num-classes", type=int, default=1000, help="classifier outputs")


def set_help(p: argparse.ArgumentParser, dest: str, text: str) -> None:
    """Replace the help of ``p``'s flag ``dest`` (a shared flag whose default a command changes)."""
    next(a for a in p._actions if a.dest == dest).help = text


def space_from_args(args: argparse.Namespace) -> SearchSpace:
    """The space of :func:`add_space_args`' flags (every channel gene allowed, as an arch string
    may use any); a flag a command set to None keeps the SearchSpace default."""
    opts = {"layout": args.layout, "width": args.width, "use_se": args.use_se,
            "last_conv_after_pooling": args.last_conv_after_pooling, "input_size": args.input_size,
            "input_channels": args.input_channels, "num_classes": args.num_classes}  # fmt: skip
    return SearchSpace.from_options({k: v for k, v in opts.items() if v is not None},
                                    defaults={"channel_genes": tuple(range(10))})  # fmt: skip


def amount(text: str) -> float:
    """argparse type for counts: '190M', '2.8m', '5e6' or '5000000' (k, M, G suffixes)."""
    try:
        return parse_amount(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 330M, 2.8M or 3.4e6, got {text!r}") from None

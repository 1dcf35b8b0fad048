"""``spos configs``: the presets shipped with spos (library: spos.configs)."""

from __future__ import annotations

import argparse

from .. import configs

EXAMPLES = """examples:
  spos configs                                    # list the presets
  spos configs show fashion-mnist > my.yaml       # copy one, edit it, run spos pipeline --config my.yaml
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "configs",
        help="list the preset configs, or print one",
        description="The presets are YAML configs inside the package. Every --config takes a preset "
        "name or a file; `spos configs show NAME` prints a preset to copy and edit.",
        epilog=EXAMPLES,
    )
    p.set_defaults(func=run_list)
    s = p.add_subparsers(dest="configs_command", metavar="{list,show}")
    s.add_parser("list", help="list the presets (the default)", epilog=EXAMPLES).set_defaults(func=run_list)
    show = s.add_parser("show", help="print one preset's YAML", epilog=EXAMPLES)
    show.add_argument("name", metavar="NAME", choices=configs.names(), help="a preset name")
    show.set_defaults(func=run_show)


def run_list(args: argparse.Namespace) -> int:
    width = max(map(len, configs.PRESETS))
    for name in configs.names():
        command, text = configs.PRESETS[name]
        print(f"{name:<{width}}  spos {command:<15} {text}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    print(configs.preset_text(args.name), end="")
    return 0

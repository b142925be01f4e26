"""The `kerascnn` command line (the only argparse code of kerascnn)."""

from kerascnn.cli.core import (  # noqa: F401
    SUBCOMMANDS,
    add_model_arguments,
    build_parser,
    command_name,
    main,
    model_kwargs,
    parse_int_list,
)

"""gpucloud: the command line of the GPU cloud (`gpucloud_cli.main`) and the SDK under it
(`gpucloud_cli.sdk`). Nothing is imported here: `gpucloud --help` must start fast."""

__version__ = "0.1.0"

"""A toy genview generator, installed as an outside plugin (entry point group ``genview.generators``).

This module is what the entry point names. It imports neither torch nor the model: the job service
reads the declaration (params, presets, size) to validate a job before any model is loaded.
"""

from genview.generator import GeneratorDeclaration, Param, ParamSpec

DECLARATION = GeneratorDeclaration(
    name="toy",
    generator="genview_toy_plugin.model:ToyGenerator",
    params=ParamSpec([
        Param("sigma", "float", 0.5, "how far the noise moves a view from its source's embedding", minimum=0.0, maximum=10.0),
        Param("invert", "bool", False, "invert the colours of every view"),
    ]),
    summary="a toy generator: a random linear decoder of (embedding + noise), 16 px",
    presets=("tiny",),
    nominal_side=16,
)

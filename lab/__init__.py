"""The solver lab: compare solvers by speed and quality, check artifacts against
their sources, and write the tables and figures that show it.

It sits above the runtime and the torch side (it drives both) and below the CLI;
matplotlib and Pillow come with the ``lab`` extra::

    pip install "edgediff[cpu,lab]"
"""

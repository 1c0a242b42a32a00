"""The benchmark tooling behind ``fastpoint bench`` and ``fastpoint info``: the layer suites (``suites``),
peer libraries set up for a layer (``peers``), the runner (``runner``), alternating timing (``timing``),
machine limits measured (``measure``), reports and plots (``report``) and the command's options (``cli``).
Nothing in the convolution API imports it."""

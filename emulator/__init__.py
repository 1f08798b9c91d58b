"""The embedded AWS for the demo and the integration tests: moto in server mode, the demo network, and the
deployment of the real synthesized Floodgate stack into it."""

import os

# The CDK's jsii runtime starts with the first `import aws_cdk` and warns at length that Node 20 is past its
# end of life; this machine's Node is 20 by design (see README), so say it once here for every entry point.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

"""Bridges from streamgru to stream processors, each an optional extra.

``streamgru.integrations.flink`` (extra ``flink``): a keyed Apache Flink
operator holding every stream's state in Flink's checkpointed keyed state.
Importing streamgru, or this package, never imports the processor itself.
"""

"""The agent as a LangGraph API server loads it (``langgraph.json``): the served graph with
its context checks, the render-only graph, and the dev server's trace checkpointer.
"""

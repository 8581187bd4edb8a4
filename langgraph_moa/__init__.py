"""langgraph-moa: Mixture-of-Agents as a LangGraph graph."""

"""Chat models: provider facts, the factory that turns a ``ModelSpec`` into a chat model with
one shared HTTP pool per base URL, and the embedded llama.cpp model. Not graph code: the graph
only asks ``get_chat_model(spec)`` for a model."""

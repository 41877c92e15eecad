"""Other people's way of writing the chat server, measured against ours by `learn bench chat`."""

//! Anthropic Messages API wire types (request, response, stream events, errors).

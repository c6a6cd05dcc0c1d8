"""Prompts written for the benchmarks (shared by every benchmark script).

Short, everyday assistant requests of the kind AlpacaFarm-Eval contains, sized for a
135M-parameter model: answers fit in a few dozen tokens.
"""

PROMPTS = [
    "Give me three tips for staying focused while studying.",
    "What is the capital of Australia?",
    "Write a short, friendly message inviting a colleague to lunch.",
    "Explain what photosynthesis is in one or two sentences.",
    "How can I make my morning routine more productive?",
    "Suggest a name for a small bakery.",
    "What are the health benefits of drinking water?",
    "Describe a cat to someone who has never seen one.",
    "How do I politely decline an invitation to a party?",
    "Give me a simple recipe for a healthy breakfast.",
    "Why is the sky blue?",
    "What should I pack for a weekend camping trip?",
    "Write a one-sentence thank-you note to a teacher.",
    "How can I save money on groceries?",
    "Explain the difference between weather and climate.",
    "What is a good way to start learning to play the guitar?",
    "Give two reasons why exercise is good for mental health.",
    "How do I keep a houseplant alive?",
    "Write a short motivational quote for someone starting a new job.",
    "What is the boiling point of water at sea level?",
    "How can I be a better listener?",
    "Recommend a hobby for someone who likes being outdoors.",
    "Explain what a computer virus is to a child.",
    "What are some tips for writing a clear email?",
]

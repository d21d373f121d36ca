package ai.multilora;

/** Token counts and latencies of a request (seconds; timeToFirstToken is negative before the first token). */
public final class RequestUsage {
    public final long promptTokens;
    public final long generatedTokens;
    public final double queueSeconds;
    public final double timeToFirstToken;

    RequestUsage(long promptTokens, long generatedTokens, double queueSeconds, double timeToFirstToken) {
        this.promptTokens = promptTokens;
        this.generatedTokens = generatedTokens;
        this.queueSeconds = queueSeconds;
        this.timeToFirstToken = timeToFirstToken;
    }

    @Override
    public String toString() {
        return "RequestUsage(prompt=" + promptTokens + ", generated=" + generatedTokens + ", queue=" + queueSeconds
                + "s, ttft=" + timeToFirstToken + "s)";
    }
}

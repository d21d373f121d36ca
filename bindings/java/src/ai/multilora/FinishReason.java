package ai.multilora;

/** Why a request finished (the C MLORA_FINISH_* values). */
public enum FinishReason {
    NONE, LENGTH, EOS, STOP, CANCELLED, ERROR;

    static FinishReason of(int code) {
        FinishReason[] all = values();
        return code >= 0 && code < all.length ? all[code] : ERROR;
    }
}

package ai.multilora;

/** A failed multilora call: the C status, its symbolic name and the library's message (read on the failing thread). */
public class MultiloraException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final int status;
    private final String statusName;

    public MultiloraException(int status, String statusName, String message) {
        super(message);
        this.status = status;
        this.statusName = statusName;
    }

    /** The mlora_status_t value (see {@link MultiloraLibrary}'s MLORA_STATUS_* constants). */
    public int status() {
        return status;
    }

    /** The status's symbolic name, e.g. "MLORA_STATUS_NOT_FOUND". */
    public String statusName() {
        return statusName;
    }

    @Override
    public String toString() {
        return statusName + ": " + getMessage();
    }
}

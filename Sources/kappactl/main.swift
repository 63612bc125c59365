import KappaCore

#if canImport(Glibc)
import Glibc
#endif

/// kappactl: the operator's tool. Each command parses its arguments, calls KappaCore, prints.
let root = Command(
    "kappactl",
    abstract: "Operate Kappa: deploy job versions, watch them catch up, switch readers, roll back, retire.",
    discussion: """
        State lives in the state directory: --state DIR, else $KAPPA_STATE, else ./.kappa.
        Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 refused by state, 5 timeout,
        6 the version waited for failed, 130 a wait stopped by Ctrl-C.
        """,
    options: [GlobalOptions.state, GlobalOptions.catalog, SecretOptions.catalogFile, GlobalOptions.log, GlobalOptions.kafkaSetting,
              SecretOptions.kafkaConfig, GlobalOptions.archive,
              .flag("version", help: "Print Kappa's version and the catalog schema it uses.", inherited: false)],
    subcommands: [DemoCommand.command] + JobCommands.all + [TopicCommands.group, ProduceCommand.command, ConsumeCommand.command, ArchiveCommands.group, KafkaMockCommand.command]
)

exit(await CommandLineTool.run(root, arguments: Array(CommandLine.arguments.dropFirst())))

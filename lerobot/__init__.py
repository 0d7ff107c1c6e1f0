"""LeRobot: real-world robot learning in PyTorch.

The lists below are what the library knows about; `lerobot.available_datasets` names the public Hub datasets
whose formats we read (any LeRobot-format dataset works, these are the well-known ones).
"""

__version__ = "0.1.0"

available_tasks_per_env = {
    "aloha": ["AlohaInsertion-v0", "AlohaTransferCube-v0"],
    "pusht": ["PushT-v0"],
    "xarm": ["XarmLift-v0"],
}
available_envs = list(available_tasks_per_env)

available_datasets_per_env = {
    "aloha": [
        "lerobot/aloha_sim_insertion_human",
        "lerobot/aloha_sim_insertion_scripted",
        "lerobot/aloha_sim_transfer_cube_human",
        "lerobot/aloha_sim_transfer_cube_scripted",
    ],
    "pusht": ["lerobot/pusht"],
    "xarm": [
        "lerobot/xarm_lift_medium",
        "lerobot/xarm_lift_medium_replay",
        "lerobot/xarm_push_medium",
        "lerobot/xarm_push_medium_replay",
    ],
}
available_real_world_datasets = ["lerobot/umi_cup_in_the_wild"]
available_datasets = sorted(
    {repo for repos in available_datasets_per_env.values() for repo in repos}
    | set(available_real_world_datasets)
)
